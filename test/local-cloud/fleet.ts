/**
 * Simulated EC2 instances. Each instance is a directory that stands for its filesystem root:
 * `/var/www/html/env.php` on the instance is `<root>/var/www/html/env.php` here. The instance's
 * own bookkeeping (what the shims record) lives in `<root>/.local-cloud/`.
 *
 * Owner and group: the machine running the tests usually has no `apache` user and may not run
 * as root, so the instances' PATH starts with a `chown` shim that checks the user and group
 * against the instance's own user list (like /etc/passwd on the instance would) and records the
 * requested `owner:group` against the file's device:inode — the owner follows the file through
 * the document's rename, as real ownership does. `ownerOf(path)` reads it back. Modes are real.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Clock } from './clock.ts';

export type InstanceState =
  | 'pending'
  | 'running'
  | 'stopping'
  | 'stopped'
  | 'shutting-down'
  | 'terminated';

// instance-state-code (API_InstanceState.html): 0 pending, 16 running, 32 shutting-down,
// 48 terminated, 64 stopping, 80 stopped.
export const STATE_CODES: Record<InstanceState, number> = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
};

export interface InstanceFaults {
  /** The next N `aws ssm get-parameter` calls on the instance fail to connect (CLI exit 255). */
  fetchFailures?: number;
  /** Simulated seconds the agent takes to pick a command up (added to the fleet default). */
  agentLatencySeconds?: number;
  /** The next N `systemctl` calls fail (exit 1), e.g. a service that rejects the new file. */
  systemctlFailures?: number;
}

export interface InstanceSpec {
  id?: string;
  /** EC2 tags, e.g. { Environment: 'prod', Name: 'web-1' }. */
  tags?: Record<string, string>;
  state?: InstanceState;
  /** Registered with SSM (agent installed, instance profile allows it). Default true. */
  managed?: boolean;
  /** Agent connected (PingStatus Online); false means ConnectionLost. Default true. */
  online?: boolean;
  faults?: InstanceFaults;
  /** Directories that exist on the instance. Default ['/var/www/html', '/etc/app']. */
  directories?: string[];
  /** Users and groups the instance knows (its /etc/passwd and /etc/group). */
  users?: string[];
}

const DEFAULT_USERS = ['root', 'apache', 'nginx', 'www-data', 'ec2-user', 'daemon', 'nobody'];
const here = dirname(fileURLToPath(import.meta.url));

export class Instance {
  readonly id: string;
  readonly root: string;
  /** Where the shims keep their records for this instance. */
  readonly stateDir: string;
  readonly launchTime: Date;
  readonly privateIp: string;
  registeredAt: Date;
  tags: Record<string, string>;
  state: InstanceState;
  managed: boolean;
  online: boolean;
  faults: InstanceFaults;
  users: string[];
  lastPing: Date;

  constructor(
    spec: InstanceSpec & { id: string },
    fleetRoot: string,
    index: number,
    now: Date = new Date(),
  ) {
    this.id = spec.id;
    this.launchTime = now;
    this.registeredAt = now;
    this.lastPing = now;
    this.root = join(fleetRoot, spec.id);
    this.stateDir = join(this.root, '.local-cloud');
    this.tags = { ...spec.tags };
    this.state = spec.state ?? 'running';
    this.managed = spec.managed ?? true;
    this.online = spec.online ?? true;
    this.faults = { ...spec.faults };
    this.users = spec.users ?? DEFAULT_USERS;
    this.privateIp = `10.0.${Math.floor(index / 250)}.${(index % 250) + 4}`;
    mkdirSync(this.stateDir, { recursive: true });
    for (const directory of spec.directories ?? ['/var/www/html', '/etc/app']) {
      mkdirSync(this.path(directory), { recursive: true });
    }
    this.syncFaultFiles();
  }

  /** The local path of an absolute path on the instance. */
  path(absolute: string): string {
    if (!absolute.startsWith('/')) throw new Error(`not an absolute path: ${absolute}`);
    return join(this.root, absolute);
  }

  exists(absolute: string): boolean {
    return existsSync(this.path(absolute));
  }

  readFile(absolute: string): Buffer {
    return readFileSync(this.path(absolute));
  }

  /** Permission bits, e.g. 0o400. */
  mode(absolute: string): number {
    return statSync(this.path(absolute)).mode & 0o7777;
  }

  /** The owner and group last set with chown on this file, or undefined. */
  ownerOf(absolute: string): { owner: string; group: string } | undefined {
    return recordedOwner(this.stateDir, this.path(absolute));
  }

  /** The systemctl command lines run on the instance. */
  systemctlCalls(): string[] {
    const log = join(this.stateDir, 'systemctl.log');
    return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
  }

  /** Writes a file on the instance (parents created), e.g. a pre-existing secrets file. */
  writeFile(absolute: string, content: string | Buffer, mode = 0o400): void {
    const path = this.path(absolute);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
    chmodSync(path, mode);
  }

  /** Writes the counters the shims consume (fetch failures, systemctl failures). */
  syncFaultFiles(): void {
    writeFileSync(join(this.stateDir, 'fetch-failures'), String(this.faults.fetchFailures ?? 0));
    writeFileSync(
      join(this.stateDir, 'systemctl-failures'),
      String(this.faults.systemctlFailures ?? 0),
    );
    writeFileSync(join(this.stateDir, 'users'), `${this.users.join('\n')}\n`);
  }

  /** Fetch failures left (the shim decrements the file). */
  fetchFailuresLeft(): number {
    return Number(readFileSync(join(this.stateDir, 'fetch-failures'), 'utf8').trim() || '0');
  }

  get pingStatus(): 'Online' | 'ConnectionLost' {
    return this.online ? 'Online' : 'ConnectionLost';
  }

  /** Running, managed and online: the agent can take a command now. */
  get reachable(): boolean {
    return this.state === 'running' && this.managed && this.online;
  }
}

/**
 * The owner and group the chown shim last recorded for the local file `path` of the instance
 * whose bookkeeping is in `stateDir` (`<root>/.local-cloud`), or undefined.
 */
export function recordedOwner(
  stateDir: string,
  path: string,
): { owner: string; group: string } | undefined {
  if (!existsSync(path)) return undefined;
  const stat = statSync(path);
  const key = `${stat.dev}:${stat.ino}`;
  const log = join(stateDir, 'owners');
  if (!existsSync(log)) return undefined;
  let found: { owner: string; group: string } | undefined;
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const [inode, owner = '', group = ''] = line.split(' ');
    if (inode === key) found = { owner, group };
  }
  return found;
}

export interface FleetChange {
  instance: Instance;
  previousState: InstanceState;
}

/** The instances of the local cloud, and the shims every instance's PATH starts with. */
export class Fleet extends EventEmitter<{ state: [FleetChange]; online: [Instance] }> {
  readonly root: string;
  readonly bin: string;
  private readonly byId = new Map<string, Instance>();

  /** Where launch, registration and ping times come from (the local cloud's simulated time). */
  readonly clock: Clock;

  constructor(root: string, clock: Clock = new Clock()) {
    super();
    this.clock = clock;
    // One listener per undelivered invocation: thousands in a benchmark, not a leak.
    this.setMaxListeners(0);
    this.root = root;
    this.bin = join(root, '.bin');
    writeShims(this.bin);
  }

  add(spec: InstanceSpec): Instance {
    const id = spec.id ?? `i-0${randomBytes(8).toString('hex')}`;
    if (!/^i-(\w{8}|\w{17})$/.test(id)) throw new Error(`invalid instance id ${id}`);
    if (this.byId.has(id)) throw new Error(`instance ${id} already exists`);
    const instance = new Instance({ ...spec, id }, this.root, this.byId.size, this.clock.now());
    this.byId.set(id, instance);
    return instance;
  }

  get(id: string): Instance {
    const instance = this.byId.get(id);
    if (!instance) throw new Error(`no instance ${id} in the fleet`);
    return instance;
  }

  find(id: string): Instance | undefined {
    return this.byId.get(id);
  }

  list(): Instance[] {
    return [...this.byId.values()];
  }

  /** Instances whose tag `key` equals `value`. */
  tagged(key: string, value: string): Instance[] {
    return this.list().filter((instance) => instance.tags[key] === value);
  }

  /** Changes an instance's EC2 state; the cloud emits the EC2 state-change event. */
  setState(id: string, state: InstanceState): void {
    const instance = this.get(id);
    const previousState = instance.state;
    if (previousState === state) return;
    instance.state = state;
    this.emit('state', { instance, previousState });
    if (instance.reachable) this.emit('online', instance);
  }

  /** Connects or disconnects the instance's agent (PingStatus Online / ConnectionLost). */
  setOnline(id: string, online: boolean): void {
    const instance = this.get(id);
    instance.online = online;
    instance.lastPing = this.clock.now();
    if (instance.reachable) this.emit('online', instance);
  }

  /**
   * The instance's SSM agent registers (a new instance's agent does so seconds after boot):
   * from now on DescribeInstanceInformation lists it and commands can reach it.
   */
  register(id: string): void {
    const instance = this.get(id);
    instance.managed = true;
    instance.registeredAt = this.clock.now();
    instance.lastPing = this.clock.now();
    if (instance.reachable) this.emit('online', instance);
  }

  setFaults(id: string, faults: InstanceFaults): void {
    const instance = this.get(id);
    instance.faults = { ...instance.faults, ...faults };
    instance.syncFaultFiles();
  }
}

function writeShims(bin: string): void {
  mkdirSync(bin, { recursive: true });
  const node = process.execPath;
  const awsCli = join(here, 'aws-cli.ts');
  const write = (name: string, text: string) =>
    writeFileSync(join(bin, name), text, { mode: 0o755 });
  write(
    'aws',
    `#!/bin/sh\n# The AWS CLI of a local-cloud instance: see test/local-cloud/aws-cli.ts.\nexec '${node}' --disable-warning=ExperimentalWarning '${awsCli}' "$@"\n`,
  );
  write(
    'chown',
    `#!/bin/sh
# chown for a local-cloud instance (test/local-cloud/fleet.ts): checks the user and group exist on
# the instance, then records "dev:inode owner group" instead of changing the real owner.
state=\${LOCAL_CLOUD_INSTANCE_STATE:?not on a local-cloud instance}
while :; do
  case \${1-} in
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then echo "chown: missing operand" >&2; exit 1; fi
spec=$1
shift
owner=\${spec%%:*}
group=
case $spec in *:*) group=\${spec#*:} ;; esac
known() { case $1 in ''|*[!0-9]*) grep -qx -- "$1" "$state/users" ;; *) return 0 ;; esac; }
if ! known "$owner"; then echo "chown: invalid user: '$spec'" >&2; exit 1; fi
if [ -n "$group" ] && ! known "$group"; then echo "chown: invalid group: '$spec'" >&2; exit 1; fi
status=0
for file in "$@"; do
  if [ ! -e "$file" ]; then
    echo "chown: cannot access '$file': No such file or directory" >&2
    status=1
    continue
  fi
  printf '%s %s %s\\n' "$(stat -c %d:%i "$file")" "$owner" "$group" >>"$state/owners"
done
exit $status
`,
  );
  write(
    'systemctl',
    `#!/bin/sh
# systemctl for a local-cloud instance: records each call; fails while systemctl-failures > 0.
state=\${LOCAL_CLOUD_INSTANCE_STATE:?not on a local-cloud instance}
printf '%s\\n' "$*" >>"$state/systemctl.log"
left=$(cat "$state/systemctl-failures" 2>/dev/null || echo 0)
if [ "\${left:-0}" -gt 0 ]; then
  echo $((left - 1)) >"$state/systemctl-failures"
  unit=$2
  echo "Job for $unit failed because the control process exited with error code." >&2
  echo "See \\"systemctl status $unit\\" and \\"journalctl -xeu $unit\\" for details." >&2
  exit 1
fi
exit 0
`,
  );
}
