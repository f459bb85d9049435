// Test support: one MCP client (the SDK's, over Streamable HTTP) per cluster
// member, opened on first use, and tool calls that return the result as data.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Member } from '../local-cluster.ts';

export type ToolResult = { isError?: boolean; content: { type: string; text: string }[]; structuredContent?: Record<string, unknown> };

/** A slow start on a loaded machine is not a failure of the call. */
const TOOL_CALL_TIMEOUT_MS = 120_000;

export class McpClients {
  private readonly clients = new Map<string, Client>();

  constructor(private readonly name: string) {}

  async of(member: Member): Promise<Client> {
    const key = `${member.id}@${member.mcp}`;
    const existing = this.clients.get(key);
    if (existing !== undefined) return existing;
    const client = new Client({ name: this.name, version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://${member.mcp}/mcp`), { requestInit: { headers: { ...member.mcpHeaders } } }));
    this.clients.set(key, client);
    return client;
  }

  async call(member: Member, tool: string, args: Record<string, unknown>): Promise<ToolResult> {
    return (await (await this.of(member)).callTool({ name: tool, arguments: args }, undefined, { timeout: TOOL_CALL_TIMEOUT_MS })) as ToolResult;
  }

  /** Forget every client (after their nodes died): the next call connects anew. */
  async closeAll(): Promise<void> {
    const clients = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
  }
}

export const resultText = (result: ToolResult): string => result.content.map((part) => part.text).join('\n');
