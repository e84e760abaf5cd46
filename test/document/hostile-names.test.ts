/**
 * Issue 10: the document runs as root, but the directory of an application's secrets file is
 * usually writable by the application's own user, who also owns the live file. Every name the
 * document uses beside the destination is therefore a name that user (or whoever compromised the
 * application) controls. These tests plant, as that user, a symbolic link (to a directory, to a
 * file, to a path that does not exist yet, all outside the destination's directory) or a hard
 * link to the live file at each of those names, run two ordinary rollouts, and check that nothing
 * outside the destination's directory was created, moved, changed or re-owned, and that the live
 * file ends either correct or untouched.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { it as base, describe, expect } from 'vitest';
import { DocumentExitCode, parseResultLine } from '../../shared/document-contract.ts';
import {
  CANARY,
  makeSandbox,
  type RunResult,
  runDocument,
  type Sandbox,
  SHELLS,
  snapshot,
} from './harness.ts';

/** The application user: owns the destination's directory and the live file (nobody:nogroup). */
const OWNER = 65534;
const FILE_PARAMETERS = {
  FileOwner: String(OWNER),
  FileGroup: String(OWNER),
  FileMode: '0440',
  Backups: '3',
};

const OLD = `<?php return ['db_password' => 'old-${CANARY}'];\n`;
const FIRST = `<?php return ['db_password' => 'first-${CANARY}'];\n`;
const SECOND = `<?php return ['db_password' => 'second-${CANARY}'];\n`;
/** What the owner writes into its own env.php hoping root will carry it somewhere (issue 10). */
const PAYLOAD = '* * * * * root /tmp/payload\n';

interface Hostile {
  box: Sandbox;
  /** Outside the destination's directory: what the planted links point at. */
  outside: string;
  /** Where the owner keeps its own hard link to the live file. */
  ownerHome: string;
}

const it = base.extend<{ hostile: Hostile }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads fixture dependencies from the pattern
  hostile: async ({}, use) => {
    const box = makeSandbox();
    // The owner must reach its directory: the sandbox root is traversable, not listable by others.
    chmodSync(box.root, 0o711);
    chownSync(box.dir, OWNER, OWNER);
    chmodSync(box.dir, 0o755);
    const outside = join(box.root, 'outside');
    mkdirSync(join(outside, 'dir'), { recursive: true });
    chmodSync(outside, 0o755);
    writeFileSync(join(outside, 'dir', 'keep'), 'kept\n', { mode: 0o644 });
    writeFileSync(join(outside, 'file'), 'outside file\n', { mode: 0o644 });
    const ownerHome = join(outside, 'home');
    mkdirSync(ownerHome, { mode: 0o755 });
    chownSync(ownerHome, OWNER, OWNER);
    // The live file as an earlier rollout left it: the application's, group-readable.
    writeFileSync(box.dest, OLD);
    chownSync(box.dest, OWNER, OWNER);
    chmodSync(box.dest, 0o440);
    await use({ box, outside, ownerHome });
    box.cleanup();
  },
});

/** Runs a command as the application user (no root, no supplementary groups). */
function asOwner(command: string, ...args: string[]): void {
  execFileSync(
    'setpriv',
    [`--reuid=${OWNER}`, `--regid=${OWNER}`, '--clear-groups', '--', command, ...args],
    { stdio: 'pipe' },
  );
}

/** Every entry under `root`, as lstat sees it: type, owner, mode, inode, size, mtime and content. */
function tree(root: string): Record<string, string> {
  const entries: Record<string, string> = {};
  const walk = (path: string, name: string) => {
    const stat = lstatSync(path);
    const head = `${stat.uid}:${stat.gid} ${(stat.mode & 0o7777).toString(8)} ino=${stat.ino} mtime=${stat.mtimeMs}`;
    if (stat.isSymbolicLink()) {
      entries[name] = `link ${head} -> ${readlinkSync(path)}`;
    } else if (stat.isDirectory()) {
      entries[name] = `dir ${head}`;
      for (const child of readdirSync(path).sort()) walk(join(path, child), `${name}/${child}`);
    } else {
      entries[name] = `file ${head} ${readFileSync(path).toString('base64')}`;
    }
  };
  walk(root, '.');
  return entries;
}

type Plant =
  | 'symlink to a directory'
  | 'symlink to a file'
  | 'symlink to a missing path'
  | 'hard link';
const PLANTS: Plant[] = [
  'symlink to a directory',
  'symlink to a file',
  'symlink to a missing path',
  'hard link',
];

/**
 * The names the document uses, or used, beside /…/env.php. The lock now lives in the root-only
 * state directory; its old name beside the file is kept here because that is where issue 10
 * found it. `<temporary directory>` is the mktemp name: a test double for mktemp creates the
 * real directory and then, as the owner, moves it away and puts the planted thing in its place,
 * which is the race an owner can win in its own directory.
 */
const NAMES = [
  '.env.php.secrets-fanout.lock',
  'env.php.bak.1',
  'env.php.bak.2',
  'env.php.bak.3',
  'env.php.bak.4',
  '.env.php.secrets-fanout.AbCdEf0123',
  '<temporary directory>',
] as const;
type Name = (typeof NAMES)[number];

function targetOf(hostile: Hostile, plant: Plant): string {
  switch (plant) {
    case 'symlink to a directory':
      return join(hostile.outside, 'dir');
    case 'symlink to a file':
      return join(hostile.outside, 'file');
    case 'symlink to a missing path':
      return join(hostile.outside, 'nologin');
    case 'hard link':
      return hostile.box.dest;
  }
}

/** Plants `plant` at `name` as the owner; for the hard link the owner also keeps one of its own. */
function plantAt(hostile: Hostile, name: Name, plant: Plant): void {
  const { box } = hostile;
  const target = targetOf(hostile, plant);
  if (plant === 'hard link') asOwner('ln', box.dest, join(hostile.ownerHome, 'env.php'));
  if (name === '<temporary directory>') {
    installRacingMktemp(box, target, plant === 'hard link' ? 'hard' : 'symbolic');
    return;
  }
  if (plant === 'hard link') asOwner('ln', target, join(box.dir, name));
  else asOwner('ln', '-s', target, join(box.dir, name));
}

/** Replaces mktemp on the sandbox PATH by the real one followed by the owner's swap. */
function installRacingMktemp(box: Sandbox, target: string, link: 'hard' | 'symbolic'): void {
  const wrapper = join(box.bin, 'mktemp');
  const real = execFileSync('sh', ['-c', 'command -v mktemp'], { encoding: 'utf8' }).trim();
  rmSync(wrapper);
  const swap = link === 'hard' ? `ln '${target}' "$1"` : `ln -s '${target}' "$1"`;
  writeFileSync(
    wrapper,
    `#!/bin/sh
made=$('${real}' "$@") || exit $?
setpriv --reuid=${OWNER} --regid=${OWNER} --clear-groups -- /bin/sh -c 'mv -T "$1" "$1.moved-away" && ${swap.replaceAll("'", "'\\''")}' sh "$made" >&2 || exit 99
printf '%s\\n' "$made"
`,
    { mode: 0o755 },
  );
  symlinkSync(
    execFileSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).trim(),
    join(box.bin, 'setpriv'),
  );
}

async function twoRollouts(shell: string, box: Sandbox): Promise<[RunResult, RunResult]> {
  box.setParameter(`${PAYLOAD}${FIRST}`, 8);
  const first = await runDocument(shell, box, { parameters: FILE_PARAMETERS });
  box.setParameter(`${PAYLOAD}${SECOND}`, 9);
  const second = await runDocument(shell, box, { parameters: FILE_PARAMETERS });
  return [first, second];
}

/**
 * What the document does with each planted thing:
 * - a hard link to the live file (wherever): refuses (destination-unusable), the file untouched;
 * - the temporary directory swapped under it: refuses (destination-unusable), the file untouched;
 * - a symlink at a backup name: removes the link, writes, rotates the backups;
 * - a symlink at any other name it no longer uses: ignores it and writes.
 */
function expected(name: Name, plant: Plant): 'refused' | 'written' {
  if (plant === 'hard link' || name === '<temporary directory>') return 'refused';
  return 'written';
}

describe.each(SHELLS)(
  'ReplaceSecretsFile under %s, with names planted by the owner of the directory',
  { concurrent: true, timeout: 60_000 },
  (shell) => {
    for (const name of NAMES) {
      it.for(PLANTS)(`${name}: %s outside, two rollouts`, async (plant, { hostile }) => {
        // Arrange
        const { box, outside } = hostile;
        writeFileSync(box.dest, PAYLOAD);
        chmodSync(box.dest, 0o440);
        plantAt(hostile, name, plant);
        const live = snapshot(box.dest);
        const outsideBefore = tree(outside);

        // Act
        const results = await twoRollouts(shell, box);

        // Assert: nothing outside the destination's directory was created, moved, changed or re-owned.
        expect(tree(outside)).toEqual(outsideBefore);
        for (const result of results) {
          expect(result.stdout + result.stderr).not.toContain(CANARY);
        }
        if (expected(name, plant) === 'refused') {
          for (const result of results) {
            expect(result.status).toBe(DocumentExitCode.DestinationUnusable);
            expect(parseResultLine(result.stdout)).toEqual({
              result: 'failed',
              reason: 'destination-unusable',
            });
          }
          expect(snapshot(box.dest)).toEqual(live);
          expect(lstatSync(box.dest)).toMatchObject({ uid: OWNER, gid: OWNER });
          return;
        }
        expect(results.map((result) => result.status)).toEqual([0, 0]);
        expect(results.map((result) => parseResultLine(result.stdout))).toEqual([
          { result: 'updated', version: 8 },
          { result: 'updated', version: 9 },
        ]);
        const dest = lstatSync(box.dest);
        expect(dest.isFile()).toBe(true);
        expect([dest.uid, dest.gid, dest.mode & 0o7777]).toEqual([OWNER, OWNER, 0o440]);
        expect(readFileSync(box.dest, 'utf8')).toBe(`${PAYLOAD}${SECOND}`);
        // The backup chain: real root-only files, newest first.
        for (const [index, content] of [
          [1, `${PAYLOAD}${FIRST}`],
          [2, PAYLOAD],
        ] as const) {
          const backup = lstatSync(`${box.dest}.bak.${index}`);
          expect(backup.isFile()).toBe(true);
          expect([backup.uid, backup.gid, backup.mode & 0o7777]).toEqual([0, 0, 0o400]);
          expect(readFileSync(`${box.dest}.bak.${index}`, 'utf8')).toBe(content);
        }
        const left = name.startsWith('env.php.bak.') ? [] : [name];
        expect(box.listDir()).toEqual(
          ['env.php', 'env.php.bak.1', 'env.php.bak.2', ...left].sort(),
        );
      });
    }

    it("the owner's own hard link to the live file keeps its owner, mode and content", async ({
      hostile,
    }) => {
      const { box, ownerHome } = hostile;
      const own = join(ownerHome, 'env.php');
      asOwner('ln', box.dest, own);
      const before = statSync(own);

      const results = await twoRollouts(shell, box);

      const after = statSync(own);
      expect([after.ino, after.uid, after.gid, after.mode]).toEqual([
        before.ino,
        before.uid,
        before.gid,
        before.mode,
      ]);
      expect(readFileSync(own, 'utf8')).toBe(OLD);
      expect(results.map((result) => result.status)).toEqual([
        DocumentExitCode.DestinationUnusable,
        DocumentExitCode.DestinationUnusable,
      ]);
      expect(results[0]?.stderr).toMatch(/has more than one hard link/);
    });

    it('the live file swapped for a symlink between the checks and the link: refused, nothing followed', async ({
      hostile,
    }) => {
      // A test double for ln does what the owner can do at that moment, then runs the real ln.
      const { box, outside } = hostile;
      const real = execFileSync('sh', ['-c', 'command -v ln'], { encoding: 'utf8' }).trim();
      rmSync(join(box.bin, 'ln'));
      writeFileSync(
        join(box.bin, 'ln'),
        `#!/bin/sh\n'${real}' -sfn '${join(outside, 'file')}' '${box.dest}'\nexec '${real}' "$@"\n`,
        { mode: 0o755 },
      );
      const outsideBefore = tree(outside);
      box.setParameter(FIRST, 8);

      const result = await runDocument(shell, box, { parameters: FILE_PARAMETERS });

      expect(result.status).toBe(DocumentExitCode.DestinationUnusable);
      expect(result.stderr).toMatch(/was replaced while in use/);
      expect(tree(outside)).toEqual(outsideBefore);
      expect(lstatSync(box.dest).isSymbolicLink()).toBe(true);
      expect(box.listDir()).toEqual(['env.php']);
    });

    it('leaves what another user named like its temporary directory, removes what a killed run left', async ({
      hostile,
    }) => {
      const { box } = hostile;
      const ours = join(box.dir, '.env.php.secrets-fanout.K1lledRun0');
      mkdirSync(ours, { mode: 0o700 });
      writeFileSync(join(ours, 'new'), 'stale');
      asOwner('mkdir', join(box.dir, '.env.php.secrets-fanout.NotOurs000'));
      asOwner(
        'sh',
        '-c',
        `echo mine > '${join(box.dir, '.env.php.secrets-fanout.NotOurs000', 'f')}'`,
      );
      box.setParameter(FIRST, 8);

      const result = await runDocument(shell, box, { parameters: FILE_PARAMETERS });

      expect(result.status).toBe(0);
      expect(existsSync(ours)).toBe(false);
      expect(readFileSync(join(box.dir, '.env.php.secrets-fanout.NotOurs000', 'f'), 'utf8')).toBe(
        'mine\n',
      );
    });

    it('a backup name holding a directory of the owner: refused before anything is fetched', async ({
      hostile,
    }) => {
      const { box } = hostile;
      asOwner('mkdir', `${box.dest}.bak.2`);
      const live = snapshot(box.dest);
      box.setParameter(FIRST, 8);

      const result = await runDocument(shell, box, { parameters: FILE_PARAMETERS });

      expect(result.status).toBe(DocumentExitCode.DestinationUnusable);
      expect(box.awsCalls()).toBe(0);
      expect(snapshot(box.dest)).toEqual(live);
      expect(existsSync(`${box.dest}.bak.2`)).toBe(true);
    });
  },
);
