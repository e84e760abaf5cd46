/**
 * Extracts a deployment package (.zip) the way Lambda does before running it. Only what
 * `serverless package` writes is needed: stored or deflated entries, no encryption, no zip64.
 * Format: https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT (central directory, 4.3.12).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize, sep } from 'node:path';
import { inflateRawSync } from 'node:zlib';

/** Writes every file of `zipPath` under `destination`. Throws on a malformed archive. */
export function extractZip(zipPath: string, destination: string): string[] {
  const data = readFileSync(zipPath);
  let end = data.length - 22;
  while (end >= 0 && data.readUInt32LE(end) !== 0x06054b50) end -= 1;
  if (end < 0) throw new Error(`${zipPath}: not a zip file (no end of central directory)`);
  const count = data.readUInt16LE(end + 10);
  let offset = data.readUInt32LE(end + 16);
  const written: string[] = [];
  for (let i = 0; i < count; i += 1) {
    if (data.readUInt32LE(offset) !== 0x02014b50) throw new Error(`${zipPath}: bad central entry`);
    const method = data.readUInt16LE(offset + 10);
    const compressedSize = data.readUInt32LE(offset + 20);
    const nameLength = data.readUInt16LE(offset + 28);
    const extraLength = data.readUInt16LE(offset + 30);
    const commentLength = data.readUInt16LE(offset + 32);
    const localOffset = data.readUInt32LE(offset + 42);
    const name = data.toString('utf8', offset + 46, offset + 46 + nameLength);
    offset += 46 + nameLength + extraLength + commentLength;
    if (name.endsWith('/')) continue;
    const target = normalize(join(destination, name));
    if (!target.startsWith(normalize(destination) + sep)) {
      throw new Error(`${zipPath}: entry ${name} escapes the destination`);
    }
    const localNameLength = data.readUInt16LE(localOffset + 26);
    const localExtraLength = data.readUInt16LE(localOffset + 28);
    const start = localOffset + 30 + localNameLength + localExtraLength;
    const raw = data.subarray(start, start + compressedSize);
    const content = method === 0 ? raw : method === 8 ? inflateRawSync(raw) : undefined;
    if (!content) throw new Error(`${zipPath}: entry ${name} uses compression method ${method}`);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content);
    written.push(name);
  }
  return written;
}
