// A Go text/template engine for the deploy tests: the part of the language a Helm
// chart uses (actions with trim markers, comments, pipelines, variables, if / else if
// / range / with / define / template, break and continue) with Go's printing and
// truthiness, and the functions given to it. No helm binary can be installed here and
// no complete JavaScript implementation of Go templates with Sprig exists on npm, so
// the chart is rendered with this; go-template.test.ts checks it against Go's own
// text/template (compiled to WebAssembly) on the builtin functions.
//
// Values keep Go's kinds where charts trip over them: numbers from YAML/JSON values
// are float64 (JS number), integers made in templates are int (JS bigint), so that
// `printf "%d" .Values.port` and `until .Values.replicas` fail as they do in Helm.

export type Value = null | boolean | string | number | bigint | Value[] | { [key: string]: Value };
/** A function of the template language; undefined is Go's "no value" (index of a missing key). */
export type TemplateFunction = (...args: Value[]) => Value | undefined;

/** A template that cannot be parsed or executed, with Go's wording where it matters. */
export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

// ---- lexing: text and actions ------------------------------------------------------------

type Piece = { kind: 'text'; text: string } | { kind: 'action'; body: string; line: number };

const SPACE = /[ \t\r\n]/;

function splitActions(source: string, name: string): Piece[] {
  const pieces: Piece[] = [];
  let at = 0;
  let trimNext = false;
  while (at <= source.length) {
    const open = source.indexOf('{{', at);
    let text = source.slice(at, open < 0 ? source.length : open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, '');
    trimNext = false;
    if (open < 0) {
      pieces.push({ kind: 'text', text });
      break;
    }
    let start = open + 2;
    if (source[start] === '-' && SPACE.test(source[start + 1] ?? '')) {
      text = text.replace(/[ \t\r\n]+$/, '');
      start += 2;
    }
    pieces.push({ kind: 'text', text });
    const end = findActionEnd(source, start, name);
    let body = source.slice(start, end);
    if (body.endsWith(' -') || body.endsWith('\t-') || body.endsWith('\n-') || body.endsWith('\r-')) {
      body = body.slice(0, -1);
      trimNext = true;
    }
    pieces.push({ kind: 'action', body, line: source.slice(0, open).split('\n').length });
    at = end + 2;
  }
  return pieces;
}

/** Index of the `}}` closing an action, skipping strings and comments. */
function findActionEnd(source: string, from: number, name: string): number {
  let i = from;
  while (i < source.length) {
    const c = source[i];
    if (source.startsWith('/*', i)) {
      const close = source.indexOf('*/', i + 2);
      if (close < 0) break;
      i = close + 2;
    } else if (c === '"' || c === "'") {
      i += 1;
      while (i < source.length && source[i] !== c) i += source[i] === '\\' ? 2 : 1;
      i += 1;
    } else if (c === '`') {
      const close = source.indexOf('`', i + 1);
      if (close < 0) break;
      i = close + 1;
    } else if (source.startsWith('}}', i)) {
      return i;
    } else {
      i += 1;
    }
  }
  throw new TemplateError(`template: ${name}: unclosed action`);
}

// ---- tokens of an action --------------------------------------------------------------------

type Token =
  | { t: 'field'; names: string[] }
  | { t: 'var'; name: string; names: string[] }
  | { t: 'ident'; name: string }
  | { t: 'string'; value: string }
  | { t: 'number'; value: number | bigint }
  | { t: 'bool'; value: boolean }
  | { t: 'nil' }
  | { t: 'dot' }
  | { t: '(' }
  | { t: ')'; names: string[] }
  | { t: '|' }
  | { t: ':=' }
  | { t: '=' }
  | { t: ',' };

function unquote(raw: string): string {
  // Go's escapes are a superset of what charts use; JSON's cover \n \t \" \\ \uXXXX.
  return JSON.parse(raw.replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1').replace(/\\a/g, '\\u0007').replace(/\\v/g, '\\u000b')) as string;
}

function tokenize(body: string, where: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const fieldChain = (): string[] => {
    const names: string[] = [];
    while (body[i] === '.' && /[A-Za-z_]/.test(body[i + 1] ?? '')) {
      const match = /^\.([A-Za-z_][A-Za-z0-9_]*)/.exec(body.slice(i)) as RegExpExecArray;
      names.push(match[1] as string);
      i += match[0].length;
    }
    return names;
  };
  while (i < body.length) {
    const c = body[i] as string;
    if (SPACE.test(c)) {
      i += 1;
    } else if (c === '"') {
      const match = /^"(?:[^"\\]|\\.)*"/.exec(body.slice(i));
      if (match === null) throw new TemplateError(`${where}: unterminated quoted string`);
      tokens.push({ t: 'string', value: unquote(match[0]) });
      i += match[0].length;
    } else if (c === '`') {
      const close = body.indexOf('`', i + 1);
      tokens.push({ t: 'string', value: body.slice(i + 1, close) });
      i = close + 1;
    } else if (c === '(') {
      tokens.push({ t: '(' });
      i += 1;
    } else if (c === ')') {
      i += 1;
      tokens.push({ t: ')', names: fieldChain() });
    } else if (c === '|') {
      tokens.push({ t: '|' });
      i += 1;
    } else if (c === ',') {
      tokens.push({ t: ',' });
      i += 1;
    } else if (body.startsWith(':=', i)) {
      tokens.push({ t: ':=' });
      i += 2;
    } else if (c === '=') {
      tokens.push({ t: '=' });
      i += 1;
    } else if (c === '$') {
      const match = /^\$[A-Za-z0-9_]*/.exec(body.slice(i)) as RegExpExecArray;
      i += match[0].length;
      tokens.push({ t: 'var', name: match[0], names: fieldChain() });
    } else if (c === '.') {
      if (/[A-Za-z_]/.test(body[i + 1] ?? '')) tokens.push({ t: 'field', names: fieldChain() });
      else {
        tokens.push({ t: 'dot' });
        i += 1;
      }
    } else if (/[-+0-9]/.test(c)) {
      const match = /^[-+]?(?:0[xX][0-9a-fA-F_]+|[0-9_]*\.?[0-9_]+(?:[eE][-+]?[0-9]+)?)/.exec(body.slice(i));
      if (match === null || match[0] === '') throw new TemplateError(`${where}: bad number syntax at '${body.slice(i, i + 10)}'`);
      const text = match[0].replaceAll('_', '');
      tokens.push({ t: 'number', value: /^[-+]?(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(text) ? BigInt(text) : Number(text) });
      i += match[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(body.slice(i)) as RegExpExecArray;
      i += match[0].length;
      if (match[0] === 'true' || match[0] === 'false') tokens.push({ t: 'bool', value: match[0] === 'true' });
      else if (match[0] === 'nil') tokens.push({ t: 'nil' });
      else tokens.push({ t: 'ident', name: match[0] });
    } else {
      throw new TemplateError(`${where}: unexpected '${c}' in action`);
    }
  }
  return tokens;
}

// ---- parsing ---------------------------------------------------------------------------------

type Arg =
  | { k: 'field'; names: string[] }
  | { k: 'var'; name: string; names: string[] }
  | { k: 'func'; name: string }
  | { k: 'const'; value: Value }
  | { k: 'dot' }
  | { k: 'pipe'; pipe: Pipeline; names: string[] };
interface Pipeline {
  readonly decl: string[];
  readonly assign: boolean;
  readonly cmds: Arg[][];
}
type Node =
  | { n: 'text'; text: string }
  | { n: 'action'; pipe: Pipeline; where: string }
  | { n: 'if' | 'with'; pipe: Pipeline; body: Node[]; otherwise: Node[]; where: string }
  | { n: 'range'; pipe: Pipeline; body: Node[]; otherwise: Node[]; where: string }
  | { n: 'template'; name: string; pipe: Pipeline | null; where: string }
  | { n: 'break' | 'continue' };

function parsePipeline(tokens: Token[], where: string, allowDecl: boolean): Pipeline {
  let decl: string[] = [];
  let assign = false;
  let i = 0;
  if (allowDecl) {
    const declEnd = tokens.findIndex((token) => token.t === ':=' || token.t === '=');
    if (declEnd > 0 && tokens.slice(0, declEnd).every((token) => token.t === 'var' || token.t === ',')) {
      decl = tokens.slice(0, declEnd).filter((token): token is Extract<Token, { t: 'var' }> => token.t === 'var').map((token) => token.name);
      assign = tokens[declEnd]?.t === '=';
      i = declEnd + 1;
    }
  }
  const cmds: Arg[][] = [[]];
  const stack: { cmds: Arg[][] }[] = [];
  let current = cmds;
  for (; i < tokens.length; i += 1) {
    const token = tokens[i] as Token;
    const cmd = current[current.length - 1] as Arg[];
    switch (token.t) {
      case '|':
        if (cmd.length === 0) throw new TemplateError(`${where}: missing command before '|'`);
        current.push([]);
        break;
      case '(':
        stack.push({ cmds: current });
        current = [[]];
        break;
      case ')': {
        const outer = stack.pop();
        if (outer === undefined) throw new TemplateError(`${where}: unexpected ')'`);
        const inner: Pipeline = { decl: [], assign: false, cmds: current };
        current = outer.cmds;
        (current[current.length - 1] as Arg[]).push({ k: 'pipe', pipe: inner, names: token.names });
        break;
      }
      case 'field':
        cmd.push({ k: 'field', names: token.names });
        break;
      case 'var':
        cmd.push({ k: 'var', name: token.name, names: token.names });
        break;
      case 'ident':
        cmd.push({ k: 'func', name: token.name });
        break;
      case 'string':
      case 'number':
      case 'bool':
        cmd.push({ k: 'const', value: token.value });
        break;
      case 'nil':
        cmd.push({ k: 'const', value: null });
        break;
      case 'dot':
        cmd.push({ k: 'dot' });
        break;
      default:
        throw new TemplateError(`${where}: unexpected '${token.t}'`);
    }
  }
  if (stack.length > 0) throw new TemplateError(`${where}: unclosed left paren`);
  if (cmds.some((cmd) => cmd.length === 0)) throw new TemplateError(`${where}: missing value for command`);
  return { decl, assign, cmds };
}

/** Parse `source`; `define`d templates go into `defines`; returns the top-level list. */
export function parseTemplate(source: string, name: string, defines: Map<string, Node[]>): Node[] {
  const pieces = splitActions(source, name);
  let at = 0;
  const parseList = (ends: readonly string[]): { nodes: Node[]; end: string; rest: string } => {
    const nodes: Node[] = [];
    while (at < pieces.length) {
      const piece = pieces[at] as Piece;
      at += 1;
      if (piece.kind === 'text') {
        if (piece.text !== '') nodes.push({ n: 'text', text: piece.text });
        continue;
      }
      const where = `template: ${name}:${piece.line}`;
      const body = piece.body.trim();
      if (body.startsWith('/*')) {
        if (!body.endsWith('*/')) throw new TemplateError(`${where}: comment ends before closing delimiter`);
        continue;
      }
      const keyword = /^(if|else|end|range|with|define|template|block|break|continue)\b/.exec(body)?.[1];
      const rest = keyword === undefined ? body : body.slice(keyword.length).trim();
      switch (keyword) {
        case 'end':
        case 'else':
          if (!ends.includes(keyword)) throw new TemplateError(`${where}: unexpected {{${keyword}}}`);
          return { nodes, end: keyword, rest };
        case 'if':
        case 'with':
        case 'range':
          nodes.push(parseBlock(keyword, rest, where));
          break;
        case 'define': {
          const defined = tokenize(rest, where);
          const first = defined[0];
          if (defined.length !== 1 || first?.t !== 'string') throw new TemplateError(`${where}: define needs a quoted name`);
          const inner = parseList(['end']);
          defines.set(first.value, inner.nodes);
          break;
        }
        case 'template': {
          const tokens = tokenize(rest, where);
          const first = tokens[0];
          if (first?.t !== 'string') throw new TemplateError(`${where}: template needs a quoted name`);
          nodes.push({ n: 'template', name: first.value, pipe: tokens.length > 1 ? parsePipeline(tokens.slice(1), where, false) : null, where });
          break;
        }
        case 'break':
        case 'continue':
          nodes.push({ n: keyword });
          break;
        case 'block':
          throw new TemplateError(`${where}: {{block}} is not supported by this renderer`);
        default:
          nodes.push({ n: 'action', pipe: parsePipeline(tokenize(body, where), where, true), where });
      }
    }
    if (ends.length > 0) throw new TemplateError(`template: ${name}: unexpected EOF`);
    return { nodes, end: '', rest: '' };
  };
  const parseBlock = (keyword: 'if' | 'with' | 'range', head: string, where: string): Node => {
    const pipe = parsePipeline(tokenize(head, where), where, true);
    const body = parseList(['end', 'else']);
    let otherwise: Node[] = [];
    if (body.end === 'else') {
      const chained = /^(if|with)\b/.exec(body.rest)?.[1];
      if (chained === 'if' || chained === 'with') otherwise = [parseBlock(chained, body.rest.slice(chained.length).trim(), where)];
      else otherwise = parseList(['end']).nodes;
    }
    return keyword === 'range' ? { n: 'range', pipe, body: body.nodes, otherwise, where } : { n: keyword, pipe, body: body.nodes, otherwise, where };
  };
  return parseList([]).nodes;
}

// ---- Go's view of values --------------------------------------------------------------------

export function goKind(value: Value | undefined): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'bigint') return 'int';
  if (typeof value === 'number') return 'float64';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'bool';
  if (Array.isArray(value)) return 'slice';
  return 'map';
}

export function truthy(value: Value | undefined): boolean {
  if (value === null || value === undefined) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0;
  if (typeof value === 'bigint') return value !== 0n;
  if (typeof value === 'string') return value !== '';
  if (Array.isArray(value)) return value.length > 0;
  return Object.keys(value).length > 0;
}

/** strconv.FormatFloat(f, 'g', -1, 64), which %v uses for a float64. */
export function formatFloat(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  const [mantissa, exponentText] = value.toExponential().split('e') as [string, string];
  const exponent = Number(exponentText);
  // Shortest formatting decides with a precision of 6: 1e+06, not 1000000 (Helm's large-number surprise).
  if (exponent < -4 || exponent >= 6) {
    const sign = exponent < 0 ? '-' : '+';
    return `${mantissa}e${sign}${String(Math.abs(exponent)).padStart(2, '0')}`;
  }
  return String(value);
}

/** fmt's %v. */
export function printValue(value: Value | undefined): string {
  if (value === null || value === undefined) return '<nil>';
  if (typeof value === 'number') return formatFloat(value);
  if (typeof value === 'bigint' || typeof value === 'boolean' || typeof value === 'string') return String(value);
  if (Array.isArray(value)) return `[${value.map(printValue).join(' ')}]`;
  return `map[${Object.keys(value).sort().map((key) => `${key}:${printValue(value[key] ?? null)}`).join(' ')}]`;
}

/** strconv.Quote for the characters charts meet. */
export function goQuote(text: string): string {
  return JSON.stringify(text).replace(/\\u007f/g, '\\x7f');
}

/** fmt.Sprintf for %s %d %v %q %t %%, with Go's %!verb(type=value) for a wrong operand. */
export function sprintf(format: string, args: readonly Value[]): string {
  let next = 0;
  const out = format.replace(/%([-+ #0]*)(\d*)([a-zA-Z%])/g, (whole, _flags: string, width: string, verb: string) => {
    if (verb === '%') return '%';
    if (next >= args.length) return `%!${verb}(MISSING)`;
    const arg = args[next++] as Value;
    const kind = goKind(arg);
    const wrong = (): string => `%!${verb}(${kind === 'nil' ? '<nil>' : `${kind}=${printValue(arg)}`})`;
    let text: string;
    switch (verb) {
      case 'v':
        text = printValue(arg);
        break;
      case 's':
        text = kind === 'string' ? (arg as string) : kind === 'slice' || kind === 'map' ? printValue(arg) : wrong();
        break;
      case 'd':
        text = kind === 'int' ? String(arg) : wrong();
        break;
      case 'q':
        text = kind === 'string' ? goQuote(arg as string) : wrong();
        break;
      case 't':
        text = kind === 'bool' ? String(arg) : wrong();
        break;
      default:
        throw new TemplateError(`printf verb %${verb} is not supported by this renderer (in '${whole}')`);
    }
    return width === '' ? text : text.padStart(Number(width));
  });
  return next < args.length ? `${out}%!(EXTRA ${args.slice(next).map((a) => `${goKind(a)}=${printValue(a)}`).join(', ')})` : out;
}

// ---- builtins of text/template ----------------------------------------------------------------

function compare(a: Value, b: Value, op: string): number {
  const ka = goKind(a);
  const kb = goKind(b);
  if (ka !== kb) throw new TemplateError(`error calling ${op}: incompatible types for comparison`);
  if (ka === 'int' || ka === 'float64' || ka === 'string') return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
  if (ka === 'bool' && (op === 'eq' || op === 'ne')) return a === b ? 0 : 1;
  if (ka === 'nil' && (op === 'eq' || op === 'ne')) return 0;
  throw new TemplateError(`error calling ${op}: invalid type for comparison`);
}

export const BUILTINS: Record<string, TemplateFunction> = {
  // and/or take their arguments lazily (Go 1.18): Templates.command evaluates them; these are their names.
  and: () => null,
  or: () => null,
  eq: (first, ...rest) => rest.some((other) => compare(first as Value, other, 'eq') === 0),
  ne: (a, b) => compare(a as Value, b as Value, 'ne') !== 0,
  lt: (a, b) => compare(a as Value, b as Value, 'lt') < 0,
  le: (a, b) => compare(a as Value, b as Value, 'le') <= 0,
  gt: (a, b) => compare(a as Value, b as Value, 'gt') > 0,
  ge: (a, b) => compare(a as Value, b as Value, 'ge') >= 0,
  not: (value) => !truthy(value),
  len: (value) => {
    if (typeof value === 'string') return BigInt(new TextEncoder().encode(value).length);
    if (Array.isArray(value)) return BigInt(value.length);
    if (value !== null && typeof value === 'object') return BigInt(Object.keys(value).length);
    throw new TemplateError(`error calling len: len of type ${goKind(value)}`);
  },
  index: (collection, ...keys) => {
    let current = collection as Value;
    for (const key of keys) {
      if (Array.isArray(current)) {
        if (typeof key !== 'bigint') throw new TemplateError(`error calling index: cannot index slice/array with type ${goKind(key)}`);
        const item = current[Number(key)];
        if (item === undefined) throw new TemplateError(`error calling index: index out of range: ${key}`);
        current = item;
      } else if (current !== null && typeof current === 'object') {
        const map = current as Record<string, Value>;
        if (!Object.hasOwn(map, String(key))) return undefined;
        current = map[String(key)] as Value;
      } else {
        throw new TemplateError(`error calling index: can't index item of type ${goKind(current)}`);
      }
    }
    return current;
  },
  printf: (format, ...args) => {
    if (typeof format !== 'string') throw new TemplateError(`wrong type for value; expected string; got ${goKind(format)}`);
    return sprintf(format, args);
  },
  print: (...args) => args.map((arg, i) => (i > 0 && typeof arg !== 'string' && typeof args[i - 1] !== 'string' ? ' ' : '') + printValue(arg)).join(''),
  println: (...args) => `${args.map(printValue).join(' ')}\n`,
};

// ---- execution -------------------------------------------------------------------------------

/** A variable in scope; undefined is Go's "no value". */
interface Variable {
  readonly name: string;
  value: Value | undefined;
}

class Flow {
  constructor(readonly kind: 'break' | 'continue') {}
}

export interface RenderOptions {
  readonly functions?: Record<string, TemplateFunction>;
  /** Helm prints a missing value as "" where Go prints "<no value>". */
  readonly missingAsEmpty?: boolean;
  /** Go's Option("missingkey=error"): a missing map key is an error instead of no value. */
  readonly missingKeyError?: boolean;
}

export class Templates {
  readonly defines = new Map<string, Node[]>();
  private readonly functions: Record<string, TemplateFunction>;

  constructor(private readonly options: RenderOptions = {}) {
    this.functions = { ...BUILTINS, ...options.functions };
  }

  /** Parse `source` under `name`: its defines become available to every template. */
  add(name: string, source: string): Node[] {
    const nodes = parseTemplate(source, name, this.defines);
    this.defines.set(name, nodes);
    return nodes;
  }

  /** Execute the template `name` with `data` as dot. */
  execute(name: string, data: Value): string {
    const nodes = this.defines.get(name);
    if (nodes === undefined) throw new TemplateError(`template: no template "${name}" associated with template`);
    const out: string[] = [];
    this.run(nodes, data, [{ name: '$', value: data }], out);
    return out.join('');
  }

  private run(nodes: readonly Node[], dot: Value, vars: Variable[], out: string[]): void {
    const mark = vars.length;
    try {
      for (const node of nodes) this.step(node, dot, vars, out);
    } finally {
      vars.length = mark;
    }
  }

  private step(node: Node, dot: Value, vars: Variable[], out: string[]): void {
    switch (node.n) {
      case 'text':
        out.push(node.text);
        return;
      case 'action': {
        const value = this.pipeline(node.pipe, dot, vars, node.where);
        if (node.pipe.decl.length === 0) out.push(value === undefined || value === null ? (this.options.missingAsEmpty === true ? '' : value === undefined ? '<no value>' : '<nil>') : printValue(value));
        return;
      }
      case 'if':
      case 'with': {
        const mark = vars.length;
        const value = this.pipeline(node.pipe, dot, vars, node.where);
        try {
          if (truthy(value)) this.run(node.body, node.n === 'with' ? (value as Value) : dot, vars, out);
          else this.run(node.otherwise, dot, vars, out);
        } finally {
          vars.length = mark;
        }
        return;
      }
      case 'range':
        return this.range(node, dot, vars, out);
      case 'template': {
        const nodes = this.defines.get(node.name);
        if (nodes === undefined) throw new TemplateError(`${node.where}: no such template "${node.name}"`);
        const data = node.pipe === null ? null : (this.pipeline(node.pipe, dot, vars, node.where) ?? null);
        this.run(nodes, data, [{ name: '$', value: data }], out);
        return;
      }
      case 'break':
      case 'continue':
        throw new Flow(node.n);
      default: {
        const never: never = node;
        return never;
      }
    }
  }

  private range(node: Extract<Node, { n: 'range' }>, dot: Value, vars: Variable[], out: string[]): void {
    const pipe: Pipeline = { ...node.pipe, decl: [] };
    const value = this.pipeline(pipe, dot, vars, node.where) ?? null;
    let items: [Value, Value][];
    if (Array.isArray(value)) items = value.map((item, i) => [BigInt(i), item]);
    else if (typeof value === 'bigint') items = Array.from({ length: Number(value) }, (_, i) => [BigInt(i), BigInt(i)]);
    else if (value !== null && typeof value === 'object') items = Object.keys(value).sort().map((key) => [key, value[key] ?? null]);
    else if (value === null) items = [];
    else throw new TemplateError(`${node.where}: range can't iterate over ${printValue(value)}`);
    if (items.length === 0) return this.run(node.otherwise, dot, vars, out);
    for (const [key, item] of items) {
      const mark = vars.length;
      const decl = node.pipe.decl;
      if (decl.length === 1) vars.push({ name: decl[0] as string, value: item });
      if (decl.length === 2) vars.push({ name: decl[0] as string, value: key }, { name: decl[1] as string, value: item });
      try {
        this.run(node.body, item, vars, out);
      } catch (error) {
        if (!(error instanceof Flow)) throw error;
        if (error.kind === 'break') break;
      } finally {
        vars.length = mark;
      }
    }
  }

  /** A pipeline's value; undefined stands for Go's "no value" (a missing map key). */
  private pipeline(pipe: Pipeline, dot: Value, vars: Variable[], where: string): Value | undefined {
    let value: Value | undefined;
    let piped = false;
    for (const cmd of pipe.cmds) {
      value = this.command(cmd, dot, vars, where, piped ? [value ?? null] : []);
      piped = true;
    }
    if (pipe.decl.length > 0) {
      const name = pipe.decl[0] as string;
      if (pipe.assign) {
        const found = [...vars].reverse().find((v) => v.name === name);
        if (found === undefined) throw new TemplateError(`${where}: undefined variable: ${name}`);
        found.value = value;
      } else {
        vars.push({ name, value });
      }
    }
    return value;
  }

  private command(cmd: Arg[], dot: Value, vars: Variable[], where: string, piped: Value[]): Value | undefined {
    const [head, ...rest] = cmd as [Arg, ...Arg[]];
    if (head.k === 'func') {
      const fn = this.functions[head.name];
      if (fn === undefined) throw new TemplateError(`${where}: function "${head.name}" not defined`);
      if (head.name === 'and' || head.name === 'or') {
        const args = [...rest.map((arg) => () => this.arg(arg, dot, vars, where) ?? null), ...piped.map((p) => () => p)];
        if (args.length === 0) throw new TemplateError(`${where}: wrong number of args for ${head.name}: want at least 1 got 0`);
        let last: Value | undefined = null;
        for (const next of args) {
          last = next();
          if (head.name === 'and' ? !truthy(last) : truthy(last)) return last;
        }
        return last;
      }
      const args = [...rest.map((arg) => this.arg(arg, dot, vars, where) ?? null), ...piped];
      try {
        return fn(...args);
      } catch (error) {
        if (error instanceof TemplateError) throw new TemplateError(`${where}: executing: error calling ${head.name}: ${error.message}`);
        throw error;
      }
    }
    if (rest.length > 0 || piped.length > 0) throw new TemplateError(`${where}: can't give argument to non-function ${describe(head)}`);
    return this.arg(head, dot, vars, where);
  }

  private arg(arg: Arg, dot: Value, vars: Variable[], where: string): Value | undefined {
    switch (arg.k) {
      case 'const':
        return arg.value;
      case 'dot':
        return dot;
      case 'field':
        return fields(dot, arg.names, where, this.options.missingKeyError === true);
      case 'var': {
        const found = [...vars].reverse().find((v) => v.name === arg.name);
        if (found === undefined) throw new TemplateError(`${where}: undefined variable: ${arg.name}`);
        return fields(found.value, arg.names, where, this.options.missingKeyError === true);
      }
      case 'pipe':
        return fields(this.pipeline(arg.pipe, dot, vars, where) ?? null, arg.names, where, this.options.missingKeyError === true);
      case 'func': {
        const fn = this.functions[arg.name];
        if (fn === undefined) throw new TemplateError(`${where}: function "${arg.name}" not defined`);
        return fn();
      }
      default: {
        const never: never = arg;
        return never;
      }
    }
  }
}

function describe(arg: Arg): string {
  return arg.k === 'field' ? `.${arg.names.join('.')}` : arg.k === 'var' ? arg.name : arg.k;
}

/** `.A.B` on a value: map keys (missing = no value), an error on nil or a non-map. */
function fields(value: Value | undefined, names: readonly string[], where: string, missingKeyError: boolean): Value | undefined {
  let current = value;
  for (const name of names) {
    if (current === null || current === undefined) throw new TemplateError(`${where}: nil pointer evaluating interface {}.${name}`);
    if (typeof current !== 'object' || Array.isArray(current)) throw new TemplateError(`${where}: can't evaluate field ${name} in type ${goKind(current)}`);
    if (!Object.hasOwn(current, name) && missingKeyError) throw new TemplateError(`${where}: map has no entry for key "${name}"`);
    current = Object.hasOwn(current, name) ? current[name] : undefined;
  }
  return current;
}
