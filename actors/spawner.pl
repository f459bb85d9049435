# debughost's per-node spawner and self-fencing watchdog (see actors/spawner.ts, docs/runtimes.md).
#
# One small long-lived process per node, started by the node with pipes on fd 0 (commands from
# the node) and fd 1 (frames to the node). It forks every workload (one fork, no shell of ours in
# between), places it in its cgroups before it runs, relays its output, reaps it, and kills what
# is left of it. It is written in Perl because perl-base is part of every Debian/Ubuntu system
# (Essential: yes) and forks in microseconds, where a fork from the node costs milliseconds.
#
# Guarantees it keeps while the node cannot act:
#  - fd 0 closes when the node ends in any way (also SIGKILL): it stops every workload (SIGTERM,
#    SIGKILL after the grace in $ARGV[0] ms), removes the node's cgroups and exits.
#  - heartbeats (H lines) carry the node's owner lease: when it runs out without a new heartbeat
#    every workload is frozen (cgroup freezer; SIGSTOP of each process group without cgroups);
#    when the second deadline passes they are killed. A heartbeat in between thaws them.
#    They come on fd 0 or on the beats FIFO, which a thread of the node writes (actors/lease-beats.ts)
#    so that a busy event loop of the node does not starve them; the FIFO takes H lines only.
#
# Arguments: <orphan grace ms> then one <kind>:<dir> per cgroup hierarchy the node uses; the first
# of kind cg2 (cgroup v2), cg1f (v1 freezer) or cg1 (another v1 hierarchy) tracks processes, the
# others (kind cgx) are only removed at the end. No roots: process groups track the workloads.
# beats:<path> (optional): make a FIFO there for heartbeats (a stale file there is replaced); the
# node opens it for writing once we are ready and removes the name at once.
#
# Node -> spawner, one command per line; free text is hex, lists are NUL-joined before hex, '-' is empty:
#   H <freezeMs> <killMs> [<sentMs>]               heartbeat (0 0 disarms the watchdog); sentMs: when it was
#                                                  sent (CLOCK_MONOTONIC ms): the deadlines count from then
#   S <run> <uid> <gid> <cwd> <target> <procs> <argv> <env>   spawn (uid/gid -1: keep)
#   G <signal number> <target>                     signal every process of the target
#   K <request> <target>                           kill every process of the target; answers k
#   M <run>                                        drop the run's output from now on
# A target is cg:<hex dir> (a directory in the tracking hierarchy, with its subtree) or pg:<pgid>
# (a process group); S takes pg alone, meaning the run's own new group.
# Spawner -> node, frames of type (1 byte), id (uint32 BE), length (uint32 BE), payload:
#   R ready (payload: pid)  L leftover cgroup killed at start (payload: its path under the root)
#   P run forked (pid)  F run failed before exec (why)  O stdout bytes  D stderr bytes
#   X run ended, nothing of it left (payload: wait status of its first process)
#   k kill done (id: request; payload: '' or 'timeout')  Z fence (frozen|thawed|killed)  W warning
use strict;
use warnings;
use POSIX ();
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK O_RDONLY O_RDWR O_WRONLY);
use Config;

my $ORPHAN_GRACE_MS = shift(@ARGV) // 1000;
# Bounds, each with why: a read of at most 64 KiB keeps frames small and the loop fair; above
# 4 MiB queued for a slow (or paused) node we stop reading workloads (they block on their pipes,
# as they would with a slow reader) while heartbeats and kills go on; a kill that has not emptied
# a cgroup after 5 s (processes stuck in uninterruptible sleep) is reported and given up; output
# still open 1 s after a run's cgroup is empty belongs to someone who took the pipe along.
my $READ_BYTES_MAX = 65536;
my $QUEUED_BYTES_HIGH = 4 * 1024 * 1024;
my $KILL_WAIT_MS_MAX = 5000;
my $EOF_WAIT_MS_MAX = 1000;
my $KILL_RETRY_MS = 50;
# Commands from the node are handled for at most this long per turn of the loop (at least one):
# a burst of spawns (forks take milliseconds each on a loaded machine) must not keep the loop from
# reading heartbeats and acting on its deadlines. Measured before this bound: 0.7-2 s per burst.
my $COMMANDS_MS_MAX = 20;

# Syscall numbers by architecture (perl-base has no Time::HiRes): clock_gettime and prctl.
my %SYSCALLS = (
  'x86_64' => [228, 157],
  'aarch64' => [113, 167],
  'riscv64' => [113, 167],
  'i686' => [265, 172],
  'i386' => [265, 172],
);
my ($arch) = split /-/, $Config{archname};
my ($SYS_CLOCK_GETTIME, $SYS_PRCTL) = @{ $SYSCALLS{$arch} // [undef, undef] };

my @roots;    # [kind, dir]
my $beats_path;
my $beats;    # the beats FIFO, read-write
for my $spec (@ARGV) {
  if ($spec =~ /^beats:(.+)$/) {
    $beats_path = $1;
    next;
  }
  my ($kind, $dir) = $spec =~ /^(cg2|cg1f|cg1|cgx):(.+)$/ or die "bad root $spec\n";
  push @roots, [$kind, $dir];
}
my ($track) = grep { $_->[0] ne 'cgx' } @roots;    # undef: process groups

my $out_queue = '';
my $node_gone = 0;
my %runs;          # run id -> run
my %run_of_pid;    # first pid -> run id
my %run_of_fd;     # fd -> [run id, 'O'|'D'|'E']
my @kills;         # pending kills
my $watch = { armed => 0, freeze_at => 0, kill_at => 0, fence => 'none' };

sub now_ms {
  if (defined $SYS_CLOCK_GETTIME) {
    my $buf = "\0" x 16;
    if (syscall($SYS_CLOCK_GETTIME, 1, $buf) == 0) {
      my ($s, $ns) = unpack('q q', $buf);
      return $s * 1000 + int($ns / 1_000_000);
    }
  }
  return time() * 1000;
}

sub frame {
  my ($type, $id, $payload) = @_;
  $payload //= '';
  return if $node_gone;
  $out_queue .= pack('a1 N N', $type, $id, length $payload) . $payload;
}

sub warn_node { frame('W', 0, join('', @_)); }

sub unhex {
  my ($text) = @_;
  return '' if $text eq '-';
  return pack('H*', $text);
}

sub set_nonblocking {
  my ($fh) = @_;
  my $flags = fcntl($fh, F_GETFL, 0);
  fcntl($fh, F_SETFL, $flags | O_NONBLOCK) if defined $flags;
}

sub write_file {
  my ($path, $text) = @_;
  open(my $fh, '>', $path) or return "open $path: $!";
  my $ok = print {$fh} $text;
  my $error = $!;
  $ok = close($fh) && $ok;
  return $ok ? undef : "write $path: " . ($! || $error);
}

sub read_file {
  my ($path) = @_;
  open(my $fh, '<', $path) or return undef;
  local $/;
  my $text = <$fh>;
  close($fh);
  return $text;
}

# ---- targets: a cgroup subtree in the tracking hierarchy, or a process group ----

sub subdirs {
  my ($dir) = @_;
  my @found = ($dir);
  opendir(my $dh, $dir) or return @found;
  for my $entry (readdir $dh) {
    next if $entry eq '.' || $entry eq '..';
    my $path = "$dir/$entry";
    push @found, subdirs($path) if -d $path && !-l $path;
  }
  closedir($dh);
  return @found;
}

sub target_pids {
  my ($target) = @_;
  return () unless $target->{dir};
  my @pids;
  for my $dir (subdirs($target->{dir})) {
    my $text = read_file("$dir/cgroup.procs") // '';
    push @pids, grep { /^\d+$/ } split /\n/, $text;
  }
  return @pids;
}

sub target_empty {
  my ($target) = @_;
  if ($target->{pgid}) {
    return !kill(0, -$target->{pgid});
  }
  return 1 unless -d $target->{dir};
  if ($target->{kind} eq 'cg2') {
    my $events = read_file("$target->{dir}/cgroup.events") // '';
    return $events =~ /^populated 0$/m ? 1 : 0 if $events =~ /^populated/m;
  }
  my @pids = target_pids($target);
  return @pids == 0;
}

sub signal_target {
  my ($target, $signal) = @_;
  if ($target->{pgid}) {
    kill($signal, -$target->{pgid});
    return;
  }
  kill($signal, $_) for target_pids($target);
}

# One round of killing: v2 has cgroup.kill; v1 freezes first so that nothing forks while we kill.
sub kill_round {
  my ($target) = @_;
  if ($target->{pgid}) {
    kill('CONT', -$target->{pgid});
    kill('KILL', -$target->{pgid});
    return;
  }
  return unless -d $target->{dir};
  if ($target->{kind} eq 'cg2' && -e "$target->{dir}/cgroup.kill") {
    my $error = write_file("$target->{dir}/cgroup.kill", "1\n");
    return unless defined $error;
  }
  my $frozen = $target->{kind} eq 'cg1f' && !defined write_file("$target->{dir}/freezer.state", "FROZEN\n");
  kill('KILL', $_) for target_pids($target);
  write_file("$target->{dir}/freezer.state", "THAWED\n") if $frozen;
}

sub parse_target {
  my ($text) = @_;
  if ($text =~ /^pg:(\d+)$/) {
    return { pgid => $1 };
  }
  if ($text =~ /^cg:([0-9a-f]+)$/) {
    return { dir => unhex($1), kind => ($track ? $track->[0] : 'cg1') };
  }
  return undef;
}

# A kill in progress: retried until the target is empty or the bound passes; `done` runs once.
sub start_kill {
  my ($target, $done) = @_;
  kill_round($target);
  push @kills, { target => $target, done => $done, until => now_ms() + $KILL_WAIT_MS_MAX, next => now_ms() + $KILL_RETRY_MS };
}

sub step_kills {
  my $now = now_ms();
  my @pending;
  for my $kill (@kills) {
    if (target_empty($kill->{target})) {
      $kill->{done}->('');
    } elsif ($now >= $kill->{until}) {
      $kill->{done}->('timeout');
    } else {
      if ($now >= $kill->{next}) {
        kill_round($kill->{target});
        $kill->{next} = $now + $KILL_RETRY_MS;
      }
      push @pending, $kill;
    }
  }
  @kills = @pending;
}

# ---- freezing the whole node (the watchdog) ----

sub can_freeze {
  return 1 unless $track;    # process groups: SIGSTOP
  return $track->[0] eq 'cg2' || $track->[0] eq 'cg1f';
}

sub freeze_all {
  my ($freeze) = @_;
  if (!$track) {
    for my $run (values %runs) {
      kill($freeze ? 'STOP' : 'CONT', -$run->{pid}) if $run->{pid} && !defined $run->{status};
    }
    return;
  }
  my $error = $track->[0] eq 'cg2'
    ? write_file("$track->[1]/cgroup.freeze", $freeze ? "1\n" : "0\n")
    : write_file("$track->[1]/freezer.state", $freeze ? "FROZEN\n" : "THAWED\n");
  warn_node("watchdog: $error") if defined $error;
}

sub kill_all {
  my ($why) = @_;
  if (!$track) {
    for my $run (values %runs) {
      next unless $run->{pid} && !defined $run->{status};
      kill('KILL', -$run->{pid});
      kill('CONT', -$run->{pid});
    }
    return;
  }
  start_kill({ dir => $track->[1], kind => $track->[0] }, sub {
    my ($outcome) = @_;
    warn_node("watchdog: processes left after killing ($why)") if $outcome eq 'timeout';
  });
}

sub step_watchdog {
  return unless $watch->{armed};
  # Before acting on a deadline, the beats that came while this loop was busy elsewhere.
  read_beats() if $watch->{fence} ne 'killed' && now_ms() >= $watch->{freeze_at};
  my $now = now_ms();
  if ($watch->{fence} eq 'none' && $now >= $watch->{freeze_at}) {
    if (can_freeze()) {
      freeze_all(1);
      $watch->{fence} = 'frozen';
      frame('Z', 0, 'frozen');
    } else {
      kill_all('lease ran out');
      $watch->{fence} = 'killed';
      frame('Z', 0, 'killed');
    }
  }
  if ($watch->{fence} eq 'frozen' && $now >= $watch->{kill_at}) {
    kill_all('lease ran out while frozen');
    freeze_all(0);    # the killed die once thawed (v1); new runs must not start frozen
    $watch->{fence} = 'killed';
    frame('Z', 0, 'killed');
  }
}

sub heartbeat {
  my ($freeze_ms, $kill_ms, $sent_ms) = @_;
  my $now = now_ms();
  # A stamped beat read late counts from when it was sent, never later (a stamp from the future:
  # from now), and one that brings no later deadline (read after a newer one, or after its own
  # deadline) changes nothing: a late read must not thaw or extend. An unstamped beat counts from now.
  my $stamped = defined $sent_ms && defined $SYS_CLOCK_GETTIME;
  my $from = $stamped && $sent_ms <= $now ? $sent_ms : $now;
  if ($stamped && $freeze_ms > 0) {
    return if $from + $freeze_ms <= $now;
    return if $watch->{armed} && $watch->{fence} eq 'none' && $from + $freeze_ms <= $watch->{freeze_at};
  }
  if ($watch->{fence} eq 'frozen') {
    freeze_all(0);
    frame('Z', 0, 'thawed');
  }
  $watch->{fence} = 'none';
  if ($freeze_ms <= 0) {
    $watch->{armed} = 0;
    return;
  }
  $watch->{armed} = 1;
  $watch->{freeze_at} = $from + $freeze_ms;
  $watch->{kill_at} = $from + ($kill_ms > $freeze_ms ? $kill_ms : $freeze_ms);
}

# ---- runs ----

sub spawn_run {
  my ($id, $uid, $gid, $cwd, $target_text, $procs_hex, $argv_hex, $env_hex) = @_;
  my @procs = grep { length } split /\0/, unhex($procs_hex);
  my @argv = split /\0/, unhex($argv_hex), -1;
  my %env = map { my ($k, $v) = split /=/, $_, 2; ($k => $v // '') } grep { length } split /\0/, unhex($env_hex);
  my $target = $target_text eq 'pg' ? undef : parse_target($target_text);
  if (!@argv || ($target_text ne 'pg' && !$target)) {
    frame('F', $id, 'bad spawn request');
    frame('X', $id, 127 << 8);
    return;
  }
  my ($out_r, $out_w, $err_r, $err_w, $why_r, $why_w);
  if (!pipe($out_r, $out_w) || !pipe($err_r, $err_w) || !pipe($why_r, $why_w)) {
    frame('F', $id, "pipe: $!");
    frame('X', $id, 127 << 8);
    return;
  }
  my $pid = fork();
  if (!defined $pid) {
    frame('F', $id, "fork: $!");
    frame('X', $id, 127 << 8);
    return;
  }
  if ($pid == 0) {
    child($uid, $gid, $cwd, \@procs, \@argv, \%env, $out_w, $err_w, $why_w);
  }
  close($out_w);
  close($err_w);
  close($why_w);
  set_nonblocking($_) for ($out_r, $err_r, $why_r);
  my $run = {
    id => $id, pid => $pid, target => ($target // { pgid => $pid }), status => undef, why => '', muted => 0,
    fds => { fileno($out_r) => $out_r, fileno($err_r) => $err_r, fileno($why_r) => $why_r },
    empty_at => undef,
  };
  $runs{$id} = $run;
  $run_of_pid{$pid} = $id;
  $run_of_fd{fileno($out_r)} = [$id, 'O'];
  $run_of_fd{fileno($err_r)} = [$id, 'D'];
  $run_of_fd{fileno($why_r)} = [$id, 'E'];
  frame('P', $id, $pid);
}

# In the child: into the cgroups (before anything runs, so nothing can leave), a session of its
# own, the pipes as stdout/stderr, the tenant's user, the cwd, the env; then exec. Any failure
# goes to the parent through $why_w (close-on-exec: it closes unread when exec succeeds).
sub child {
  my ($uid, $gid, $cwd, $procs, $argv, $env, $out_w, $err_w, $why_w) = @_;
  my $step = 'start';
  eval {
    for my $file (@$procs) {
      $step = "join cgroup $file";
      my $error = write_file($file, "$$\n");
      die "$error\n" if defined $error;
    }
    $step = 'setsid';
    POSIX::setsid() or die "$!\n";
    $step = 'stdio';
    open(my $null, '<', '/dev/null') or die "/dev/null: $!\n";
    POSIX::dup2(fileno($null), 0) // die "$!\n";
    POSIX::dup2(fileno($out_w), 1) // die "$!\n";
    POSIX::dup2(fileno($err_w), 2) // die "$!\n";
    if ($gid >= 0) {
      $step = "group $gid";
      $) = "$gid $gid";
      $( = $gid;
      POSIX::setgid($gid) or die "$!\n";
    }
    if ($uid >= 0) {
      $step = "user $uid";
      POSIX::setuid($uid) or die "$!\n";
      die "still uid $<\n" if $< != $uid || $> != $uid;
    }
    # As the workload's user: the kernel checks every directory on the way.
    $step = "cwd $cwd";
    chdir($cwd) or die "$!\n";
    $step = "exec $argv->[0]";
    %ENV = %$env;
    $SIG{$_} = 'DEFAULT' for qw(CHLD PIPE TERM INT HUP);
    POSIX::sigprocmask(POSIX::SIG_SETMASK(), POSIX::SigSet->new());
    exec { $argv->[0] } @$argv or die "$!\n";
  };
  my $error = $@ || 'unknown error';
  chomp $error;
  syswrite($why_w, "$step: $error");
  POSIX::_exit(127);
}

# Reads once: 1 = got bytes, 0 = end of file (closed now), -1 = nothing there yet.
sub read_run_fd {
  my ($fd) = @_;
  my ($id, $kind) = @{ $run_of_fd{$fd} };
  my $run = $runs{$id};
  my $fh = $run->{fds}{$fd};
  my $count = sysread($fh, my $buffer, $READ_BYTES_MAX);
  return -1 if !defined $count && ($!{EAGAIN} || $!{EINTR});
  if (!$count) {
    close($fh);
    delete $run->{fds}{$fd};
    delete $run_of_fd{$fd};
    return 0;
  }
  if ($kind eq 'E') {
    $run->{why} .= $buffer;
  } elsif (!$run->{muted}) {
    frame($kind, $id, $buffer);
  }
  return 1;
}

sub close_run_output {
  my ($run) = @_;
  for my $fd (keys %{ $run->{fds} }) {
    close($run->{fds}{$fd});
    delete $run_of_fd{$fd};
  }
  $run->{fds} = {};
}

# A run ends once its first process was reaped, its cgroup (or group) is empty and its output
# was read to the end (or the bound passed): then the node gets everything it wrote, then X.
sub step_runs {
  my $now = now_ms();
  for my $run (values %runs) {
    next unless defined $run->{status};
    next unless $run->{killed};
    next unless defined $run->{empty_at};
    my $open = grep { $run_of_fd{$_}[1] ne 'E' } keys %{ $run->{fds} };
    next if $open && $now < $run->{empty_at} + $EOF_WAIT_MS_MAX;
    # The failure note is written before the child exits, so it is complete now.
    for my $fd (grep { $run_of_fd{$_}[1] eq 'E' } keys %{ $run->{fds} }) {
      1 while read_run_fd($fd) > 0;
    }
    close_run_output($run);
    frame('F', $run->{id}, $run->{why}) if length $run->{why};
    frame('X', $run->{id}, $run->{status});
    delete $run_of_pid{$run->{pid}};
    delete $runs{$run->{id}};
  }
}

sub reap {
  for (;;) {
    my $pid = waitpid(-1, POSIX::WNOHANG());
    last if $pid <= 0;
    my $status = $?;
    my $id = $run_of_pid{$pid};
    next unless defined $id;    # an orphan of a workload that we adopted as subreaper
    my $run = $runs{$id};
    $run->{status} = $status;
    # Whatever the first process left behind goes with it.
    $run->{killed} = 1;
    start_kill($run->{target}, sub { $run->{empty_at} = now_ms(); });
  }
}

# ---- commands ----

my $beats_buffer = '';

# Everything in the beats FIFO now (non-blocking).
sub read_beats {
  return unless $beats;
  for (;;) {
    my $count = sysread($beats, my $chunk, 4096);
    last unless $count;
    $beats_buffer .= $chunk;
    while ((my $newline = index($beats_buffer, "\n")) >= 0) {
      beats_command(substr($beats_buffer, 0, $newline));
      $beats_buffer = substr($beats_buffer, $newline + 1);
    }
    # Lines are short; a writer that sends no newline gets no room to fill our memory.
    $beats_buffer = '' if length($beats_buffer) > 4096;
  }
}

# The beats FIFO carries heartbeats alone: whoever can write it can keep the workloads running, no more.
sub beats_command {
  my ($line) = @_;
  my @f = split / /, $line;
  if ((@f == 3 || @f == 4) && $f[0] eq 'H') {
    heartbeat($f[1] + 0, $f[2] + 0, @f == 4 ? $f[3] + 0 : undef);
  } else {
    warn_node("beats FIFO: not a heartbeat: " . substr($line, 0, 80));
  }
}

sub command {
  my ($line) = @_;
  my @f = split / /, $line;
  my $verb = shift @f // '';
  if ($verb eq 'H' && (@f == 2 || @f == 3)) {
    heartbeat($f[0] + 0, $f[1] + 0, @f == 3 ? $f[2] + 0 : undef);
  } elsif ($verb eq 'S' && @f == 8) {
    spawn_run($f[0] + 0, $f[1] + 0, $f[2] + 0, unhex($f[3]), $f[4], $f[5], $f[6], $f[7]);
  } elsif ($verb eq 'G' && @f == 2) {
    my $target = parse_target($f[1]);
    signal_target($target, $f[0] + 0) if $target;
  } elsif ($verb eq 'K' && @f == 2) {
    my $request = $f[0] + 0;
    my $target = parse_target($f[1]);
    if (!$target) {
      frame('k', $request, 'bad target');
      return;
    }
    start_kill($target, sub { frame('k', $request, $_[0]); });
  } elsif ($verb eq 'M' && @f == 1) {
    my $run = $runs{ $f[0] + 0 };
    $run->{muted} = 1 if $run;
  } else {
    warn_node("unknown command: " . substr($line, 0, 80));
  }
}

# ---- start, the loop, the end ----

sub rmdir_roots {
  my ($include_roots) = @_;
  for my $root (@roots) {
    my @dirs = reverse subdirs($root->[1]);
    pop @dirs unless $include_roots;    # subdirs lists the root first
    rmdir($_) for @dirs;
  }
}

sub wait_kill {
  my ($target) = @_;
  my $result = 'pending';
  start_kill($target, sub { $result = $_[0]; });
  while ($result eq 'pending') {
    select(undef, undef, undef, 0.01);
    reap_quietly();
    step_kills();
  }
  return $result;
}

sub reap_quietly {
  1 while waitpid(-1, POSIX::WNOHANG()) > 0;
}

sub sweep_leftovers {
  return unless $track;
  my $root = $track->[1];
  for my $dir (subdirs($root)) {
    next if $dir eq $root;
    my $text = read_file("$dir/cgroup.procs") // '';
    frame('L', 0, substr($dir, length($root) + 1)) if $text =~ /\d/;
  }
  write_file("$root/cgroup.freeze", "0\n") if $track->[0] eq 'cg2';
  write_file("$root/freezer.state", "THAWED\n") if $track->[0] eq 'cg1f';
  my $outcome = wait_kill({ dir => $root, kind => $track->[0] });
  warn_node("leftovers of a previous run did not all die within ${KILL_WAIT_MS_MAX} ms") if $outcome eq 'timeout';
  rmdir_roots(0);
}

# The node is gone (fd 0 closed) or told us to end: SIGTERM to everything, SIGKILL after the
# grace, remove the cgroups, exit.
sub finish {
  $node_gone = 1;
  # The node removes the name once it opened the FIFO; if it never did, nothing is left behind.
  if ($beats) {
    my @ours = stat($beats);
    my @there = stat($beats_path);
    unlink($beats_path) if @there && $ours[0] == $there[0] && $ours[1] == $there[1];
  }
  $out_queue = '';
  heartbeat(0, 0);
  my @targets = $track ? ({ dir => $track->[1], kind => $track->[0] }) : map { { pgid => $_->{pid} } } grep { !defined $_->{status} } values %runs;
  signal_target($_, 15) for @targets;
  my $until = now_ms() + $ORPHAN_GRACE_MS;
  while (now_ms() < $until && grep { !target_empty($_) } @targets) {
    select(undef, undef, undef, 0.02);
    reap_quietly();
  }
  wait_kill($_) for @targets;
  reap_quietly();
  rmdir_roots(1);
  POSIX::_exit(0);
}

$SIG{PIPE} = 'IGNORE';
pipe(my $wake_r, my $wake_w) or die "pipe: $!";
set_nonblocking($_) for ($wake_r, $wake_w);
$SIG{CHLD} = sub { syswrite($wake_w, 'c'); };
my $stop_requested = 0;
$SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub { $stop_requested = 1; syswrite($wake_w, 's'); };
# Orphans of workloads (double forks) are reparented to us and reaped, not left as zombies.
syscall($SYS_PRCTL, 36, 1, 0, 0, 0) if defined $SYS_PRCTL;    # PR_SET_CHILD_SUBREAPER
set_nonblocking(\*STDIN);
set_nonblocking(\*STDOUT);
# Opened read-write: it never reads end-of-file when a writer goes (the node's thread may reopen a
# new one; fd 0 alone tells us the node is gone), and opening does not wait for a writer.
if (defined $beats_path) {
  unlink($beats_path);
  POSIX::mkfifo($beats_path, 0600) or die "mkfifo $beats_path: $!\n";
  sysopen($beats, $beats_path, O_RDWR | O_NONBLOCK) or die "open $beats_path: $!\n";
}
sweep_leftovers();
frame('R', 0, $$);

my $in_buffer = '';

# Commands in $in_buffer, for at most $COMMANDS_MS_MAX (the rest waits for the next turn).
sub run_commands {
  my $until = now_ms() + $COMMANDS_MS_MAX;
  while ((my $newline = index($in_buffer, "\n")) >= 0) {
    command(substr($in_buffer, 0, $newline));
    $in_buffer = substr($in_buffer, $newline + 1);
    last if now_ms() >= $until;
  }
}

for (;;) {
  finish() if $stop_requested;
  my ($rbits, $wbits) = ('', '');
  # Commands left over from the last turn go first; more are read once they are done.
  my $pending = index($in_buffer, "\n") >= 0;
  vec($rbits, 0, 1) = 1 unless $pending;
  vec($rbits, fileno($wake_r), 1) = 1;
  vec($rbits, fileno($beats), 1) = 1 if $beats;
  my $reading = length($out_queue) < $QUEUED_BYTES_HIGH;
  for my $fd (keys %run_of_fd) {
    vec($rbits, $fd, 1) = 1 if $reading || $run_of_fd{$fd}[1] eq 'E';
  }
  vec($wbits, 1, 1) = 1 if length $out_queue;
  my $timeout = undef;
  if ($pending) {
    $timeout = 0;
  } elsif (@kills || grep { defined $_->{status} } values %runs) {
    $timeout = 0.01;
  } elsif ($watch->{armed} && $watch->{fence} ne 'killed') {
    my $next = $watch->{fence} eq 'none' ? $watch->{freeze_at} : $watch->{kill_at};
    my $wait = ($next - now_ms()) / 1000;
    $timeout = $wait < 0 ? 0 : $wait;
  }
  my $found = select(my $rout = $rbits, my $wout = $wbits, undef, $timeout);
  if ($found > 0) {
    if (vec($rout, fileno($wake_r), 1)) {
      1 while sysread($wake_r, my $drain, 4096);
    }
    if (vec($rout, 0, 1)) {
      my $count = sysread(STDIN, my $chunk, 65536);
      if (defined $count && $count == 0) {
        finish();
      }
      $in_buffer .= $chunk if $count;
    }
    read_beats() if $beats && vec($rout, fileno($beats), 1);
    for my $fd (keys %run_of_fd) {
      read_run_fd($fd) if vec($rout, $fd, 1) && exists $run_of_fd{$fd};
    }
  }
  run_commands();
  reap();
  step_kills();
  step_runs();
  step_watchdog();
  if (length $out_queue) {
    my $written = syswrite(STDOUT, $out_queue);
    if (defined $written) {
      substr($out_queue, 0, $written) = '';
    } elsif (!$!{EAGAIN} && !$!{EINTR}) {
      $out_queue = '';    # the node is gone; fd 0 tells us soon
    }
  }
}
