// The sender's input stage: stdin -> records in the send ring, the one owner of the input's
// state. Each chunk goes through the compressor pool, or straight into the ring behind a record
// header (-0, or a stream that does not compress, with now and then a probe of whether it
// does); finished records are copied into the ring in input order; at EOF the END record with
// the stream's length and CRC-32. It tells the core how far the stream is in the ring.

import type { SenderCore } from "../core/sender";
import { Poller, POLLIN, POLLHUP, POLLERR, addressOf, readFd, describeErrno } from "../../ffi/libc";
import { PROBE_EVERY, shrankEnough, type CompressPool } from "../workers/compress-pool";
import type { SenderCodecs } from "./codecs";
import { recordKind } from "../codec";
import { KIND_RAW, RECORD_HEADER, END_RECORD, writeHeader as writeRecordHeader, writeEnd } from "../record";
import { crc32Combine, crcOfRing } from "../crc32";
import { L2Error, EXIT_TRANSFER } from "../errors";
import { fstatSync } from "node:fs";

/** A partial chunk goes out after this much quiet on stdin. */
export const FLUSH_QUIET_MS = 2;
export const STDIN = 0;
// Input read per loop turn, then sent. Small turns keep what each link gets at once within the
// burst a rate-limited queue passes straight through; htb holds each frame beyond it for a timer
// of its own. 4 x 1 Gbit, MTU 9000: 4 MiB per turn 342-368 MB/s and 81,771 timer expirations
// per GiB (nearly all htb's); 256 KiB 426-461 MB/s and 39,607.
const READ_PER_TURN = 256 << 10;
function isRegularFile(fd: number): boolean {
  try {
    return fstatSync(fd).isFile();
  } catch {
    return false;
  }
}

/** Where the next input chunk goes. */
const enum Route {
  /** Straight into the send ring (-0, or a stream that does not compress: see nextRoute). */
  Ring,
  /** Through the compressor pool. */
  Pool,
  /** Not yet: a chunk for the ring waits until every pooled chunk before it is in the ring. */
  Wait,
}


export interface InputStageConfig {
  /** The send ring (the stream's byte o at ring[o mod size]) and its address. */
  ring: Uint8Array;
  ringPtr: number;
  ringSize: number;
  chunkSize: number;
  pool: CompressPool | null;
  codecs: SenderCodecs | null;
  core: SenderCore;
  /** Ring bytes below this stream offset may be overwritten (acknowledged, and no queued frame's payload). */
  reusableBelow: () => number;
}

export class InputStage {
  private readonly ring: Uint8Array;
  private readonly ringPtr: number;
  private readonly ringSize: number;
  private readonly chunkSize: number;
  private readonly pool: CompressPool | null;
  private readonly codecs: SenderCodecs | null;
  private readonly core: SenderCore;
  private readonly reusableBelow: () => number;
  private readonly scratch = new Uint8Array(END_RECORD);
  private readonly scratchView = new DataView(this.scratch.buffer);
  private readonly stdinPoller = new Poller(1);
  private readonly stdinIsFile = isRegularFile(STDIN);
  /** The probes of an incompressible stream compress on this thread, into probeOut. */
  private readonly probeOut: Uint8Array;
  private readonly probeOutPtr: number;

  /** End of the wire stream in the ring. */
  private appended = 0;
  /** The loop's time at this turn (the codec policy's read-ahead bound depends on it). */
  private now = 0;
  /** Input bytes in records so far, and their CRC-32: what END says. */
  private total = 0;
  private streamCrc = 0;
  /** Bytes read from stdin, chunked or not yet: what a failed run reports as read. */
  private bytesRead = 0;
  private eof = false;
  private endQueued = false;
  /** Open raw record: wire offset of its header, bytes of body so far. */
  private rawStart = -1;
  private poolSlot = -1;
  private filled = 0;
  private lastRead = 0;
  /** The last read of the last turn found data (see SenderCore.inputFlows). */
  private flowing = false;
  /** A finished pool record waiting for ring space. */
  private heldRecord = -1;
  /** Chunks read straight into the ring because the stream does not compress (see nextRoute). */
  private directChunks = 0;
  /** Chunks handed to the pool, and finished records taken back from it. */
  private submitted = 0;
  private taken = 0;

  constructor(cfg: InputStageConfig) {
    this.ring = cfg.ring;
    this.ringPtr = cfg.ringPtr;
    this.ringSize = cfg.ringSize;
    this.chunkSize = cfg.chunkSize;
    this.pool = cfg.pool;
    this.codecs = cfg.codecs;
    this.core = cfg.core;
    this.reusableBelow = cfg.reusableBelow;
    this.probeOut = new Uint8Array(cfg.codecs ? cfg.chunkSize : 0);
    this.probeOutPtr = cfg.codecs ? addressOf(this.probeOut) : 0;
  }

  /** Wire-stream bytes in the ring so far. */
  get produced(): number {
    return this.appended;
  }

  /** Bytes read from stdin so far. */
  get stdinBytes(): number {
    return this.bytesRead;
  }

  /** Should the loop wake for stdin? (Not at EOF, and only with room worth a read.) */
  wantsStdin(): boolean {
    return !this.eof && !this.endQueued && this.hasRoomForInput();
  }

  /** When the input needs a turn without stdin waking the loop: a partial chunk to close, or a
   * held frame tail to let go, after the quiet time; END to queue at EOF. Infinity for none. */
  deadline(now: number): number {
    let t = Infinity;
    if (this.filled > 0 || this.flowing) t = this.lastRead + FLUSH_QUIET_MS;
    if (this.eof && !this.endQueued) t = Math.min(t, now + 1);
    return t;
  }

  /** The compressors hold chunks and none is finished and waiting: the input waits on them. */
  waitsOnCompressors(): boolean {
    return this.heldRecord < 0 && this.submitted > this.taken;
  }

  /** Ring bytes the input may fill now: the ring's free space, or less while the codec policy
   * measures the links (its read-ahead bound). */
  private ringFree(): number {
    return this.readableBelow() - this.appended;
  }

  /** Does the codec policy's read-ahead bound, not the ring, keep the input from the next
   * chunk? (The links hold that much unacknowledged: they are slower than this sender reads.) */
  heldByReadAhead(): boolean {
    if (!this.codecs || this.eof) return false;
    return this.codecs.readAhead(this.now) < this.ringSize && this.ringFree() < RECORD_HEADER + this.chunkSize;
  }

  /** The wire offset the input may fill up to. */
  private readableBelow(): number {
    const below = this.reusableBelow();
    // Not Math.min(ringSize, Infinity): its result is a double, and offsets stay int32s (see readU64).
    const ahead = this.codecs ? this.codecs.readAhead(this.now) : Infinity;
    return below + (ahead < this.ringSize ? ahead : this.ringSize);
  }

  /** One turn's input: finished records from the pool, up to READ_PER_TURN bytes of stdin, END
   * at EOF. `receiverCodecs`: FEATURE_* bits of the codecs the receiver decodes (HELLO_ACK). */
  read(now: number, receiverCodecs: number): void {
    if (this.endQueued) return;
    this.now = now;
    // Nothing is compressed before the receiver said what it decodes (it has, in HELLO_ACK).
    if (this.codecs && !this.codecs.settled) this.codecs.settle(receiverCodecs, this.pool!, now);
    if (this.pool) this.drainPool();
    // Read a bounded amount per turn so acknowledgements and sending keep their pace.
    let got = 0;
    for (let bytes = 0; !this.eof && bytes < READ_PER_TURN; ) {
      got = this.readChunk();
      if (got > 0) {
        bytes += got;
        this.lastRead = now;
      }
      if (this.filled >= this.chunkSize) {
        this.closeRecord();
        if (this.pool) this.drainPool();
      } else if (got <= 0) break;
    }
    // The last read found data and there is room for another: the next turn reads more at once
    // (or, on a pipe gone quiet, finds none by the deadline and lets the core send the tail it holds).
    this.flowing = got > 0 && !this.eof && this.hasRoomForInput();
    this.core.inputFlows(this.flowing);
    const quiet = now - this.lastRead >= FLUSH_QUIET_MS;
    if (this.filled > 0 && (this.eof || this.filled >= this.chunkSize || quiet)) this.closeRecord();
    if (this.pool) this.drainPool();
    if (this.eof && this.filled === 0 && !this.endQueued) {
      // A record opened for a read that met EOF holds nothing: forget it.
      this.rawStart = -1;
      if (!this.pool || (this.taken === this.submitted && this.heldRecord < 0)) this.queueEnd();
    }
  }

  /** Reads into the open chunk, or begins one where nextRoute says. Returns bytes read. */
  private readChunk(): number {
    if (this.rawStart >= 0) return this.readIntoRing();
    if (this.poolSlot >= 0) return this.readIntoPool();
    const route = this.nextRoute();
    return route === Route.Ring ? this.readIntoRing() : route === Route.Pool ? this.readIntoPool() : 0;
  }

  /**
   * Once the compressors find the stream incompressible, its chunks skip the pool and are read
   * straight into the ring as with -0: no copy out of a pool slot, no hand-offs to and from a
   * Worker. Every PROBE_EVERY-th is still tried with lz4, here (see probe()).
   */
  private nextRoute(): Route {
    const pool = this.pool;
    if (!pool) return Route.Ring;
    // The codec policy's none: chunks as they are, as with -0.
    if (!pool.incompressible() && !this.codecs?.sendsRaw()) return Route.Pool;
    // Stream order: the pooled chunks before this one must be in the ring first.
    return pool.idle() && this.heldRecord < 0 ? Route.Ring : Route.Wait;
  }

  /** Reads stdin straight into the ring behind a reserved record header. Returns bytes read. */
  private readIntoRing(): number {
    if (this.rawStart < 0) {
      if (!this.hasRoomForInput()) return 0;
      this.rawStart = this.appended;
      this.filled = 0;
    }
    const pos = this.rawStart + RECORD_HEADER + this.filled;
    const free = this.readableBelow() - pos;
    const contiguous = this.ringSize - (pos % this.ringSize);
    const want = Math.min(this.chunkSize - this.filled, free, contiguous);
    if (want <= 0) return 0;
    if (!this.stdinReadable()) return 0;
    const n = readFd(STDIN, this.ringPtr + (pos % this.ringSize), want);
    return this.afterRead(n);
  }

  /**
   * Is there room worth a read? Waiting until a good part of a chunk is free keeps a sender
   * whose links are the limit from waking for every few KiB the acknowledgements free (stdin
   * from a file is always readable, so poll would return at once).
   */
  private hasRoomForInput(): boolean {
    if (this.poolSlot >= 0) return true;
    if (this.rawStart < 0) {
      const route = this.nextRoute();
      if (route === Route.Pool) return this.heldRecord < 0 && this.pool!.freeSlots() > 0;
      return route === Route.Ring && this.ringFree() >= RECORD_HEADER + this.chunkSize;
    }
    const free = this.readableBelow() - (this.rawStart + RECORD_HEADER + this.filled);
    return free >= Math.min(this.chunkSize - this.filled, 64 * 1024);
  }

  private readIntoPool(): number {
    const pool = this.pool!;
    if (this.poolSlot < 0) {
      this.poolSlot = pool.acquireInput();
      if (this.poolSlot < 0) return 0;
      this.filled = 0;
    }
    const want = this.chunkSize - this.filled;
    if (want <= 0) return 0;
    if (!this.stdinReadable()) return 0;
    const n = readFd(STDIN, pool.inputPtr(this.poolSlot) + this.filled, want);
    return this.afterRead(n);
  }

  private afterRead(n: number): number {
    if (n < 0) throw new L2Error(`cannot read stdin: ${describeErrno(-n)}`, EXIT_TRANSFER);
    if (n === 0) {
      this.eof = true;
      return 0;
    }
    this.filled += n;
    this.bytesRead += n;
    return n;
  }

  /** Is there input right now? Reading a pipe only when poll says so keeps the loop from blocking. */
  private stdinReadable(): boolean {
    // A regular file is always readable, and a read never waits long: no poll needed.
    if (this.stdinIsFile) return true;
    const p = this.stdinPoller;
    p.set(0, STDIN, POLLIN);
    p.count = 1;
    if (p.wait(0) <= 0) return false;
    return (p.revents(0) & (POLLIN | POLLHUP | POLLERR)) !== 0;
  }

  private closeRecord(): void {
    const len = this.filled;
    this.filled = 0;
    if (this.poolSlot >= 0) {
      this.pool!.submit(this.poolSlot, len);
      this.poolSlot = -1;
      this.submitted++;
      return;
    }
    const start = this.rawStart;
    this.rawStart = -1;
    const bodyPos = (start + RECORD_HEADER) % this.ringSize;
    const firstPart = Math.min(len, this.ringSize - bodyPos);
    const crc = crcOfRing(this.ring, this.ringSize, start + RECORD_HEADER, start + RECORD_HEADER + len);
    const enc = this.pool ? this.probe(bodyPos, len, firstPart === len) : 0;
    writeRecordHeader(this.scratchView, 0, enc > 0 ? recordKind(this.codecs!.probeCodec()) : KIND_RAW, len, enc > 0 ? enc : len, crc);
    this.copyIntoRing(this.scratch, 0, RECORD_HEADER, start);
    this.noteChunk(crc, len);
    this.appended = start + RECORD_HEADER + (enc > 0 ? enc : len);
    this.core.streamAppended(this.appended);
  }

  /**
   * Every PROBE_EVERY-th chunk read straight into the ring while the stream does not compress:
   * tries the probe codec on it (lz4 where the receiver decodes it: a few tens of microseconds,
   * it gives up early on data that does not shrink; see SenderCodecs.probeCodec). If it shrinks after all, its body replaces the raw one in place (it is
   * shorter) and the chunks after it go to the pool again. Returns the body's length, or 0 for RAW.
   */
  private probe(bodyPos: number, len: number, contiguous: boolean): number {
    const pool = this.pool!;
    const word = this.codecs!.probeCodec();
    // The codec wants the chunk in one piece: one that wraps at the ring's end is left out. While
    // the policy sends everything as it is, the links outrun any codec: nothing to find out.
    if (this.directChunks++ % PROBE_EVERY !== PROBE_EVERY - 1 || !contiguous || len < 2 || this.codecs!.sendsRaw()) {
      pool.noteDirect(len, false, 0, word);
      return 0;
    }
    const enc = this.codecs!.encoder.encode(word, this.ringPtr + bodyPos, len, this.probeOutPtr, len - 1);
    const shrinks = shrankEnough(enc, len);
    pool.noteDirect(len, true, shrinks ? enc : 0, word);
    if (!shrinks) return 0;
    this.ring.set(this.probeOut.subarray(0, enc), bodyPos);
    return enc;
  }

  private drainPool(): void {
    const pool = this.pool!;
    for (;;) {
      if (this.heldRecord < 0) this.heldRecord = pool.nextDone();
      const slot = this.heldRecord;
      if (slot < 0) return;
      const len = pool.recordLength(slot);
      if (this.ringFree() < len) return;
      const rec = pool.recordView(slot);
      const rv = new DataView(rec.buffer, rec.byteOffset, RECORD_HEADER);
      this.noteChunk(rv.getUint32(12), rv.getUint32(4));
      this.copyIntoRing(rec, 0, len, this.appended);
      this.appended += len;
      pool.release(slot);
      this.heldRecord = -1;
      this.taken++;
      this.core.streamAppended(this.appended);
    }
  }

  private noteChunk(crc: number, rawLen: number): void {
    this.streamCrc = this.total === 0 ? crc | 0 : crc32Combine(this.streamCrc, crc | 0, rawLen) | 0;
    this.total += rawLen;
  }

  private queueEnd(): void {
    if (this.ringFree() < END_RECORD) return;
    writeEnd(this.scratchView, 0, this.total, this.streamCrc);
    this.copyIntoRing(this.scratch, 0, END_RECORD, this.appended);
    this.appended += END_RECORD;
    this.endQueued = true;
    this.core.streamEnded(this.appended, this.total, this.streamCrc >>> 0);
  }

  private copyIntoRing(src: Uint8Array, from: number, len: number, wireOffset: number): void {
    const pos = wireOffset % this.ringSize;
    const first = Math.min(len, this.ringSize - pos);
    this.ring.set(src.subarray(from, from + first), pos);
    if (first < len) this.ring.set(src.subarray(from + first, from + len), 0);
  }
}
