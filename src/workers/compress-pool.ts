// The sender's compressor pool: Workers turn input chunks into finished wire records (header +
// RAW, LZ4 or ZSTD body) in a SharedArrayBuffer, handed back to the main thread in submission order.
//
// Per-chunk traffic is Atomics only: the main thread queues a slot and bumps a counter, a worker
// claims it with compareExchange, writes the record and marks the slot DONE. The eventfd the main
// thread polls is signalled only when the main thread asked for it (nextDone() found the oldest
// chunk unfinished) and that chunk is done: an eventfd write per chunk costs a context switch
// (measured: ~50 us per 64 KiB chunk, the two workers then scaled to 1.0x instead of ~1.8x).
// postMessage is used for start-up and errors only, because the main thread sits in poll() and
// may not turn its event loop for a long time.
import { addressOf, adviseHugePages } from "../../ffi/libc";
import { lz4Bound } from "../../ffi/lz4";
import { createWorker, startWorker } from "./worker-start";
import { CODEC_LZ4, CODEC_WORDS, codecName, type CodecWord } from "../codec";
import { L2Error } from "../errors";
import { RECORD_HEADER, KIND_RAW, OFF_ENC_LEN, OFF_KIND, OFF_RAW_LEN } from "../record";

// Slot states (Int32 per slot).
export const SLOT_FREE = 0;
export const SLOT_FILLING = 1; // handed out by acquireInput, main thread only
export const SLOT_QUEUED = 2;
export const SLOT_DONE = 3;
export const SLOT_TAKEN = 4; // returned by nextDone, awaiting release

// Control words (Int32 indices). The submitted/claimed counters run modulo `wrap`, a multiple of
// PROBE_EVERY * slots, so they never overflow and `seq % PROBE_EVERY` stays regular.
export const CTL_SUBMITTED = 0;
export const CTL_CLAIMED = 1;
export const CTL_STOP = 2;
export const CTL_STREAK = 3; // incompressible chunks in a row, shared by all workers
export const CTL_WANT = 4; // 1: the main thread waits for the chunk numbered CTL_HEAD
export const CTL_HEAD = 5; // sequence number of the oldest chunk not yet returned by nextDone
export const CTL_CODEC = 6; // CodecWord for the next chunk a worker claims (written by the main thread)
export const CTL_WORDS = 8;

// An lz4 attempt on incompressible data costs about as much as the CRC (5-7 GB/s here), so after
// SKIP_AFTER incompressible chunks in a row lz4 is tried only on every PROBE_EVERY-th chunk.
// Probing every 4th keeps the ratio loss on a tar of /usr at 0.2% (every 16th: 2%, because
// compressible data after an incompressible run is sent RAW until the next probe).
export const SKIP_AFTER = 8;
export const PROBE_EVERY = 4;

/** Did lz4 (enc bytes, 0 = gave up) save at least 1/32 of the chunk? Less counts as incompressible for the skipping. */
export function shrankEnough(enc: number, rawLen: number): boolean {
  return enc > 0 && enc <= rawLen - (rawLen >>> 5);
}

/** Where everything lives in the shared buffer; computed once on the main thread, sent to workers. */
export interface PoolLayout {
  slots: number;
  chunkSize: number;
  wrap: number;
  queue: number; // Int32 index: slots entries, slot numbers in submission order
  state: number; // Int32 index: slots entries
  rawLen: number; // Int32 index: slots entries
  recLen: number; // Int32 index: slots entries, record bytes (header + body)
  recKind: number; // Int32 index: slots entries, 0 = record in the input slot (RAW), 1 = output slot
  skipped: number; // Int32 index: slots entries, 1 = compression not tried
  codec: number; // Int32 index: slots entries, the CodecWord the chunk was tried with
  busy: number; // Float64 index: one per worker, busy milliseconds
  inBase: number; // byte offset of input slot 0 (its record header sits 16 bytes before the data)
  inStride: number;
  outBase: number; // byte offset of output slot 0 (header + LZ4 body)
  outStride: number;
  bytes: number;
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

export function poolLayout(chunkSize: number, slots: number, workers: number): PoolLayout {
  const wrap = Math.floor(2 ** 30 / (slots * PROBE_EVERY)) * slots * PROBE_EVERY;
  let i = CTL_WORDS;
  const queue = i; i += slots;
  const state = i; i += slots;
  const rawLen = i; i += slots;
  const recLen = i; i += slots;
  const recKind = i; i += slots;
  const skipped = i; i += slots;
  const codec = i; i += slots;
  const busyByte = align(i * 4, 8);
  const busy = busyByte / 8;
  // A RAW record is the header written in front of the input data, so RAW needs no copy.
  const inBase = align(busyByte + workers * 8, 64) + 64; // data 64-aligned, header just before it
  const inStride = align(RECORD_HEADER + chunkSize, 64);
  const outBase = align(inBase + slots * inStride, 64);
  const outStride = align(RECORD_HEADER + lz4Bound(chunkSize), 64);
  const bytes = outBase + slots * outStride;
  return { slots, chunkSize, wrap, queue, state, rawLen, recLen, recKind, skipped, codec, busy, inBase, inStride, outBase, outStride, bytes };
}

export interface CodecStats {
  chunks: number;
  rawBytes: number;
  encodedBytes: number;
}

export interface PoolStats {
  chunks: number;
  rawChunks: number;
  skippedChunks: number;
  rawBytes: number;
  encodedBytes: number;
  busyMs: number;
  /** Compressed chunks by codec name ("lz4", "zstd-3"); chunks sent raw are not in it. */
  codecs: Record<string, CodecStats>;
}

export class CompressPool {
  private readonly ctl: Int32Array;
  private readonly busy: Float64Array;
  private readonly u8: Uint8Array;
  private readonly dv: DataView;
  private readonly base: number;
  private readonly free: Int32Array;
  private freeCount: number;
  // Submitted, not yet returned by nextDone: slots in stream order (a ring of `slots` entries).
  private readonly fifo: Int32Array;
  private fifoHead = 0;
  private fifoLen = 0;
  private submitted = 0;
  private headSeq = 0;
  private closed = false;
  private failure: string | null = null;
  /** Starts the Workers (null once called). */
  private startRest: (() => void) | null = null;
  private readonly st = { chunks: 0, rawChunks: 0, skippedChunks: 0, rawBytes: 0, encodedBytes: 0 };
  // Per CodecWord: chunks, original bytes, body bytes of the chunks that codec compressed.
  private readonly byCodec = new Float64Array(CODEC_WORDS * 3);

  private constructor(
    sab: SharedArrayBuffer,
    private readonly L: PoolLayout,
    private readonly workers: Worker[],
    private readonly intended: number,
  ) {
    this.ctl = new Int32Array(sab);
    this.busy = new Float64Array(sab);
    this.u8 = new Uint8Array(sab);
    this.dv = new DataView(sab);
    this.base = addressOf(this.u8);
    this.free = new Int32Array(L.slots);
    for (let s = 0; s < L.slots; s++) this.free[s] = L.slots - 1 - s;
    this.freeCount = L.slots;
    this.fifo = new Int32Array(L.slots);
  }

  /**
   * The workers load liblz4 (`lz4`, default true) and libzstd (`zstd`); `codec`: the first
   * chunks' codec (default lz4). `lazy`: no Worker starts before the first chunk is submitted
   * (auto may send everything as it is: on a fast link the Workers' start-up, a JIT each, is
   * CPU the sender needs then).
   */
  static async create(opts: {
    workers: number; chunkSize: number; slots: number; wakeFd: number; lz4?: boolean; zstd?: boolean; codec?: CodecWord; lazy?: boolean;
  }): Promise<CompressPool> {
    const { workers: n, chunkSize, slots, wakeFd } = opts;
    const libs = { lz4: opts.lz4 ?? true, zstd: opts.zstd ?? false };
    if (!(n >= 1) || !(chunkSize >= 1) || chunkSize > 0x7fff_0000 || !(slots >= 1)) {
      throw new L2Error(`CompressPool: bad options workers=${n} chunkSize=${chunkSize} slots=${slots}`);
    }
    const L = poolLayout(chunkSize, slots, n);
    const sab = new SharedArrayBuffer(L.bytes);
    adviseHugePages(sab);
    new Int32Array(sab)[CTL_CODEC] = opts.codec ?? CODEC_LZ4;
    const workers: Worker[] = [];
    // The first worker proves that its libraries load (unless lazy); the others start behind it
    // while the run begins (a chunk waits in its slot for whichever worker is up). One at a
    // time: concurrent first dlopen() in fresh Workers can crash Bun (oven-sh/bun#40972).
    if (!opts.lazy) {
      try {
        await startCompressor(sab, L, wakeFd, libs, workers);
      } catch (e) {
        stopWorkers(new Int32Array(sab), workers);
        throw e;
      }
    }
    const pool = new CompressPool(sab, L, workers, n);
    pool.startRest = () => {
      if (workers.length > 0) pool.watch(workers[0]!);
      void (async () => {
        for (let i = workers.length; i < n && !pool.closed; i++) {
          await startCompressor(sab, L, wakeFd, libs, workers);
          if (pool.closed) stopWorkers(pool.ctl, workers);
          else pool.watch(workers[i]!);
        }
      })().catch((e: unknown) => {
        pool.failure ??= (e as Error).message;
      });
    };
    if (!opts.lazy) pool.startWorkers();
    return pool;
  }

  /** Starts the Workers not started yet (once; submit does it for a lazy pool). */
  private startWorkers(): void {
    const start = this.startRest;
    this.startRest = null;
    start?.();
  }

  private watch(w: Worker): void {
    w.addEventListener("error", (ev) => {
      this.failure ??= `compressor worker failed: ${(ev as ErrorEvent).message}`;
    });
    // Idle workers must not keep the process alive if close() is forgotten.
    (w as unknown as { unref(): void }).unref(); // Bun extension, absent from the DOM typings
  }

  /** Slots free for input right now. */
  freeSlots(): number {
    return this.freeCount;
  }

  /** A free slot (now owned by the caller until submit), or -1. */
  acquireInput(): number {
    if (this.freeCount === 0) return -1;
    const slot = this.free[--this.freeCount]!;
    this.ctl[this.L.state + slot] = SLOT_FILLING;
    return slot;
  }

  /** Where main reads input for this slot: chunkSize bytes. */
  inputView(slot: number): Uint8Array {
    const off = this.L.inBase + slot * this.L.inStride;
    return this.u8.subarray(off, off + this.L.chunkSize);
  }

  inputPtr(slot: number): number {
    return this.base + this.L.inBase + slot * this.L.inStride;
  }

  /** Queues the slot's first rawLen bytes; submission order is stream order. */
  submit(slot: number, rawLen: number): void {
    const L = this.L;
    if (this.ctl[L.state + slot] !== SLOT_FILLING) throw new L2Error(`CompressPool.submit: slot ${slot} was not acquired`);
    if (!(rawLen >= 0 && rawLen <= L.chunkSize)) throw new L2Error(`CompressPool.submit: rawLen ${rawLen} out of range`);
    if (this.startRest) this.startWorkers();
    this.ctl[L.rawLen + slot] = rawLen;
    Atomics.store(this.ctl, L.state + slot, SLOT_QUEUED);
    const seq = this.submitted;
    Atomics.store(this.ctl, L.queue + (seq % L.slots), slot);
    this.submitted = (seq + 1) % L.wrap;
    Atomics.store(this.ctl, CTL_SUBMITTED, this.submitted);
    Atomics.notify(this.ctl, CTL_SUBMITTED, 1);
    this.fifo[(this.fifoHead + this.fifoLen) % L.slots] = slot;
    this.fifoLen++;
  }

  /** The slot of the oldest submitted chunk once its record is ready (each slot is returned once), else -1. */
  nextDone(): number {
    if (this.failure !== null) throw new L2Error(this.failure);
    const L = this.L;
    if (this.fifoLen === 0) {
      Atomics.store(this.ctl, CTL_WANT, 1);
      return -1;
    }
    const slot = this.fifo[this.fifoHead]!;
    if (Atomics.load(this.ctl, L.state + slot) !== SLOT_DONE) {
      // Ask for a wake-up, then look again: either we see DONE or its worker sees WANT.
      Atomics.store(this.ctl, CTL_WANT, 1);
      if (Atomics.load(this.ctl, L.state + slot) !== SLOT_DONE) return -1;
    }
    this.fifoHead = (this.fifoHead + 1) % L.slots;
    this.fifoLen--;
    this.headSeq = (this.headSeq + 1) % L.wrap;
    Atomics.store(this.ctl, CTL_HEAD, this.headSeq);
    this.ctl[L.state + slot] = SLOT_TAKEN;
    const off = this.recordOffset(slot);
    const st = this.st;
    st.chunks++;
    st.rawBytes += this.dv.getUint32(off + OFF_RAW_LEN, false);
    st.encodedBytes += this.dv.getUint32(off + OFF_ENC_LEN, false);
    if (this.u8[off + OFF_KIND] === KIND_RAW) st.rawChunks++;
    else this.countCodec(this.ctl[L.codec + slot]!, this.dv.getUint32(off + OFF_RAW_LEN, false), this.dv.getUint32(off + OFF_ENC_LEN, false));
    st.skippedChunks += this.ctl[L.skipped + slot]!;
    return slot;
  }

  private recordOffset(slot: number): number {
    const L = this.L;
    return this.ctl[L.recKind + slot] === 0
      ? L.inBase + slot * L.inStride - RECORD_HEADER
      : L.outBase + slot * L.outStride;
  }

  /** The finished record (header + body) of a slot returned by nextDone. */
  recordView(slot: number): Uint8Array {
    const off = this.recordOffset(slot);
    return this.u8.subarray(off, off + this.ctl[this.L.recLen + slot]!);
  }

  recordLength(slot: number): number {
    return this.ctl[this.L.recLen + slot]!;
  }

  /** The record has been consumed (or an acquired input slot goes unused, e.g. at EOF): the slot is free again. */
  release(slot: number): void {
    const state = this.ctl[this.L.state + slot];
    if (state !== SLOT_TAKEN && state !== SLOT_FILLING) {
      throw new L2Error(`CompressPool.release: slot ${slot} is neither acquired nor a finished record`);
    }
    this.ctl[this.L.state + slot] = SLOT_FREE;
    this.free[this.freeCount++] = slot;
  }

  private countCodec(word: CodecWord, rawLen: number, encLen: number): void {
    const c = this.byCodec;
    c[word * 3]++;
    c[word * 3 + 1] += rawLen;
    c[word * 3 + 2] += encLen;
  }

  /** The codec the workers use for the chunks they claim from now on. */
  setCodec(word: CodecWord): void {
    Atomics.store(this.ctl, CTL_CODEC, word);
  }

  codec(): CodecWord {
    return Atomics.load(this.ctl, CTL_CODEC);
  }

  /** Workers started so far (a lazy pool starts them at its first chunk). */
  workersStarted(): number {
    return this.workers.length;
  }

  /** Workers the pool has, or will have once they are up. */
  workerCount(): number {
    return this.intended;
  }

  /** Milliseconds the workers spent on chunks, summed over them. */
  busyMs(): number {
    let busy = 0;
    for (let i = 0; i < this.workers.length; i++) busy += this.busy[this.L.busy + i]!;
    return busy;
  }

  /** The last SKIP_AFTER chunks or more did not shrink: compression is only worth a probe now and then. */
  incompressible(): boolean {
    return Atomics.load(this.ctl, CTL_STREAK) >= SKIP_AFTER;
  }

  /** Every submitted chunk has been returned by nextDone. */
  idle(): boolean {
    return this.fifoLen === 0;
  }

  /**
   * Counts a chunk the caller put on the wire itself (read straight into its ring while the
   * stream does not compress), so the totals cover the whole stream: tried or not, and its
   * body's length if it shrank with `word` (0: sent RAW). One that shrank ends the skipping.
   */
  noteDirect(rawLen: number, tried: boolean, encLen: number, word: CodecWord): void {
    const st = this.st;
    st.chunks++;
    st.rawBytes += rawLen;
    if (!tried) st.skippedChunks++;
    if (encLen > 0) {
      st.encodedBytes += encLen;
      this.countCodec(word, rawLen, encLen);
      Atomics.store(this.ctl, CTL_STREAK, 0);
    } else {
      st.rawChunks++;
      st.encodedBytes += rawLen;
    }
  }

  /** Totals over the records returned by nextDone so far and the chunks noted as direct; busyMs is summed over all workers. */
  stats(): PoolStats {
    const codecs: Record<string, CodecStats> = {};
    const c = this.byCodec;
    for (let w = 0; w < CODEC_WORDS; w++) {
      if (c[w * 3]! > 0) codecs[codecName(w)] = { chunks: c[w * 3]!, rawBytes: c[w * 3 + 1]!, encodedBytes: c[w * 3 + 2]! };
    }
    return { ...this.st, busyMs: this.busyMs(), codecs };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    stopWorkers(this.ctl, this.workers);
  }
}

export interface WorkerInit {
  sab: SharedArrayBuffer;
  layout: PoolLayout;
  wakeFd: number;
  index: number;
  /** Libraries to load: the codecs the pool may be told to use. */
  lz4: boolean;
  zstd: boolean;
}

function startCompressor(
  sab: SharedArrayBuffer, layout: PoolLayout, wakeFd: number, libs: { lz4: boolean; zstd: boolean }, workers: Worker[],
): Promise<void> {
  const w = createWorker("compressor");
  workers.push(w);
  return startWorker(w, { sab, layout, wakeFd, index: workers.length - 1, ...libs } satisfies WorkerInit, "compressor worker");
}

function stopWorkers(ctl: Int32Array, workers: Worker[]): void {
  // Workers leave their wait loop on STOP and exit by themselves; terminate() is the backstop.
  Atomics.store(ctl, CTL_STOP, 1);
  Atomics.notify(ctl, CTL_SUBMITTED);
  for (const w of workers) w.terminate();
}
