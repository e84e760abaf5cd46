/**
 * A full disk has one meaning (issue 10, issue 9 case 10): whichever write fails, the document
 * exits WriteFailed (73, permanent: on-call frees space and resyncs) with reason write-failed, and
 * the live file is byte-for-byte what it was. The disk is real: a small tmpfs mounted over the
 * destination's directory (or the state directory), filled so that exactly one write step runs
 * out of pages or inodes. tmpfs counts data in 4 KiB pages and directories in inodes only.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it as base, describe, expect } from 'vitest';
import { DocumentExitCode, parseResultLine } from '../../shared/document-contract.ts';
import {
  CANARY,
  lastLine,
  makeSandbox,
  placeFile,
  runDocument,
  type Sandbox,
  SHELLS,
  snapshot,
} from './harness.ts';

const PAGE = 4096;
/** Three pages: copying it needs more room than the fetched value and the new file did. */
const OLD = `OLD=${CANARY}\n${'#'.repeat(3 * PAGE - CANARY.length - 6)}\n`;
/** Less than a page: the fetch output and the new file take one page each. */
const NEW = `NEW=${CANARY}\n`;

function mountTmpfs(path: string, options: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `mode=0755,${options}`, 'tmpfs', path]);
}

const it = base.extend<{ box: Sandbox }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads fixture dependencies from the pattern
  box: async ({}, use) => {
    const box = makeSandbox();
    const mounts: string[] = [];
    const mount = (path: string, options: string) => {
      mountTmpfs(path, options);
      mounts.push(path);
    };
    Object.assign(box, { mount });
    try {
      await use(box);
    } finally {
      for (const path of mounts.reverse()) execFileSync('umount', [path]);
      box.cleanup();
    }
  },
});

function mountOn(box: Sandbox, path: string, options: string): void {
  (box as Sandbox & { mount(path: string, options: string): void }).mount(path, options);
}

/** Mounts a 16-page tmpfs over the destination's directory, puts OLD in place, leaves `pages` free. */
function fullDisk(box: Sandbox, pages: number, inodes = 64): ReturnType<typeof snapshot> {
  mountOn(box, box.dir, `size=${16 * PAGE},nr_inodes=${inodes}`);
  placeFile(box.dest, OLD, 0o400);
  const free = Number(statfsSync(box.dir).bavail);
  writeFileSync(join(box.dir, 'filler'), Buffer.alloc((free - pages) * PAGE));
  expect(Number(statfsSync(box.dir).bavail)).toBe(pages);
  return snapshot(box.dest);
}

describe.each(SHELLS)(
  'ReplaceSecretsFile under %s on a full disk',
  { concurrent: true, timeout: 30_000 },
  (shell) => {
    // [write step, free pages, inodes (the tmpfs root, env.php and the filler take 3), message]
    const steps: [string, number, number, RegExp][] = [
      [
        'the private temporary directory (no inode left)',
        8,
        3,
        /cannot create a temporary directory/,
      ],
      [
        'the first temporary file (one inode left: the directory)',
        8,
        4,
        /cannot create a temporary file/,
      ],
      ['the fetched output', 0, 64, /cannot write the fetched value/],
      ['the extracted new file', 1, 64, /cannot write the new file/],
      ['the copy of the previous version', 2, 64, /cannot copy the current/],
    ];

    it.for(steps)(
      '%s: write-failed (73), the live file byte-identical',
      async ([, pages, inodes, message], { box }) => {
        const before = fullDisk(box, pages, inodes);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box);

        expect(result.status).toBe(DocumentExitCode.WriteFailed);
        expect(parseResultLine(result.stdout)).toMatchObject({
          result: 'failed',
          reason: 'write-failed',
        });
        expect(lastLine(result.stderr)).toMatch(message);
        expect(result.stdout + result.stderr).not.toContain(CANARY);
        expect(snapshot(box.dest)).toEqual(before);
        expect(box.listDir()).toEqual(['env.php', 'filler']);
      },
    );

    it('the state directory (where the lock lives): write-failed (73), the live file byte-identical', async ({
      box,
    }) => {
      placeFile(box.dest, OLD, 0o400);
      const before = snapshot(box.dest);
      execFileSync('mkdir', [box.stateRoot]);
      mountOn(box, box.stateRoot, `size=${PAGE},nr_inodes=1`);
      box.setParameter(NEW, 7);

      const result = await runDocument(shell, box);

      expect(result.status).toBe(DocumentExitCode.WriteFailed);
      expect(parseResultLine(result.stdout)).toMatchObject({
        result: 'failed',
        reason: 'write-failed',
      });
      expect(lastLine(result.stderr)).toMatch(/cannot create .*locks/);
      expect(snapshot(box.dest)).toEqual(before);
      expect(box.listDir()).toEqual(['env.php']);
    });

    it('with four pages and five inodes free the same rollout succeeds (the setup is not vacuous)', async ({
      box,
    }) => {
      fullDisk(box, 4, 8);
      box.setParameter(NEW, 7);

      const result = await runDocument(shell, box);

      expect(result.status).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe(NEW);
      expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(OLD);
    });
  },
);
