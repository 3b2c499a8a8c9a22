// The sender's codecs: which libraries it loads for --compress, what its HELLO offers, what it
// settles on once the receiver's HELLO_ACK says what it decodes, and (with auto) the policy
// that moves the pool's codec with the bottleneck.
import { loadLz4, type Lz4 } from "../../ffi/lz4";
import { loadZstd, type Zstd } from "../../ffi/zstd";
import { CODEC_LZ4, CODEC_NONE, codecName, Encoder, type CodecWord } from "../codec";
import { AUTO_LADDER, CodecPolicy, type PolicyTotals, type Rung } from "../core/codec-policy";
import type { CompressPool } from "../workers/compress-pool";
import type { Options } from "../cli";
import { systemError } from "../errors";
import { FEATURE_LZ4, FEATURE_ZSTD } from "../wire";

/** Changes kept for --stats-json (a decision every 150 ms: a change at most that often). */
const TRACE_MAX = 4096;

export interface CodecChange {
  ms: number;
  read: number;
  codec: string;
}

/** The auto ladder with -m stops at zstd-3: its contexts are 1.6 MiB per Worker there, not 2.1. */
const LOW_MEMORY_TOP = 3;

export class SenderCodecs {
  readonly lz4: Lz4 | null;
  readonly zstd: Zstd | null;
  /** On this thread, for the probes of an incompressible stream. */
  readonly encoder: Encoder;
  /** FEATURE_* bits for HELLO: the codecs this sender may send. */
  readonly features: number;
  /** Why auto goes without zstd on this host (null: it has it, or zstd was not asked for). */
  readonly zstdMissing: string | null = null;
  private settledWord: CodecWord | null = null;
  private probeWord: CodecWord = CODEC_LZ4;
  private policy: CodecPolicy | null = null;
  /** The policy's changes, first ones first: when (ms since start-up), how far into stdin, to what. */
  private readonly trace: CodecChange[] = [];
  private readonly started = performance.now();

  /** Loads what opts.compress needs (libraries are opened here, before the pool's Workers open them). */
  constructor(private readonly opts: Options) {
    const c = opts.compress;
    this.lz4 = c === "zstd" ? null : loadLz4();
    let zstd: Zstd | null = null;
    if (c === "zstd") zstd = loadZstd();
    else if (c === "auto") {
      try {
        zstd = loadZstd();
      } catch (e) {
        this.zstdMissing = (e as Error).message;
      }
    }
    this.zstd = zstd;
    this.encoder = new Encoder(this.lz4, this.zstd);
    this.features = (this.lz4 ? FEATURE_LZ4 : 0) | (this.zstd ? FEATURE_ZSTD : 0);
  }

  /** The codec to start with, before the receiver is known (nothing is compressed before that). */
  initial(): CodecWord {
    return this.opts.compress === "zstd" ? this.opts.zstdLevel : CODEC_LZ4;
  }

  get settled(): boolean {
    return this.settledWord !== null;
  }

  /**
   * The receiver's HELLO_ACK said which codecs it decodes: keep to those. A codec that was asked
   * for by name and that the receiver lacks fails the run now, naming both.
   */
  settle(receiverFeatures: number, pool: CompressPool, now: number): void {
    const decodesLz4 = (receiverFeatures & FEATURE_LZ4) !== 0;
    const decodesZstd = (receiverFeatures & FEATURE_ZSTD) !== 0;
    const c = this.opts.compress;
    if (c === "zstd" && !decodesZstd) throw cannotDecode("zstd", "libzstd.so.1 is not", "libzstd1", "--compress lz4");
    if (c === "lz4" && !decodesLz4) throw cannotDecode("lz4", "liblz4.so.1 is not", "liblz4-1", "-0");
    // auto makes do with either codec.
    if (c === "auto" && !decodesLz4 && !(decodesZstd && this.zstd)) {
      throw decodesZstd
        ? systemError(`receiver cannot decode lz4: liblz4.so.1 is not available on the receiving host, and libzstd not on this one (${this.zstdMissing}); install liblz4-1 there, or send uncompressed with -0`)
        : cannotDecode("lz4 or zstd", "neither liblz4.so.1 nor libzstd.so.1 is", "liblz4-1 or libzstd1", "-0");
    }
    let word = this.initial();
    if (c === "auto") {
      const top = this.opts.lowMemory ? LOW_MEMORY_TOP : Infinity;
      const ladder: Rung[] = AUTO_LADDER.filter((r) =>
        r.word === CODEC_NONE || (r.word === CODEC_LZ4 ? decodesLz4 : this.zstd !== null && decodesZstd && r.word <= top));
      this.policy = new CodecPolicy(ladder, pool.workerCount(), now);
      word = this.policy.current();
    }
    // At none (the policy's first measurement) the Workers get no chunks: they keep lz4 meanwhile.
    pool.setCodec(word === CODEC_NONE ? this.initial() : word);
    this.settledWord = word;
    this.trace.push({ ms: Math.round(now - this.started), read: 0, codec: codecName(word) });
    // lz4 where allowed, else zstd's cheapest level (any level decodes alike).
    this.probeWord = c === "lz4" || (c === "auto" && decodesLz4) ? CODEC_LZ4 : 1;
  }

  /**
   * What the sender's own probes of an incompressible stream use: the cheapest codec allowed,
   * whatever the pool uses (a probe only asks whether the data compresses at all, and it runs
   * on the thread that sends).
   */
  probeCodec(): CodecWord {
    return this.probeWord;
  }

  /** With auto, once per window: the policy's codec for the chunks claimed from now on.
   * `inputRead`: stdin bytes read so far, for the trace of changes. */
  tick(now: number, pool: CompressPool, m: Omit<PolicyTotals, "busyMs">, inputRead: number): void {
    const p = this.policy;
    if (!p || !p.due(now)) return;
    const totals: PolicyTotals = { ...m, busyMs: pool.busyMs(), inputBytes: inputRead };
    const word = p.update(now, totals);
    if (word !== this.settledWord) {
      this.settledWord = word;
      // none is the shell's to carry out (it stops handing chunks to the pool): the Workers keep the last codec.
      if (word !== CODEC_NONE) pool.setCodec(word);
      if (this.trace.length < TRACE_MAX) this.trace.push({ ms: Math.round(now - this.started), read: inputRead, codec: codecName(word) });
    }
  }

  /** Wire bytes the input may read ahead of what the receiver acknowledged (the policy's first
   * measurement bounds it; Infinity: the ring's size). */
  readAhead(now: number): number {
    return this.policy ? this.policy.readAhead(now) : Infinity;
  }

  /** The policy says: send chunks as they are, straight into the ring (no pool, no probes). */
  sendsRaw(): boolean {
    return this.settledWord === CODEC_NONE;
  }

  /** The codec in use now. */
  current(): CodecWord {
    return this.settledWord ?? this.initial();
  }

  describe(): { codec: string; policy: "auto" | "pinned"; codecChanges: number; codecTrace: CodecChange[] } {
    return {
      codec: codecName(this.current()), policy: this.policy ? "auto" : "pinned", codecChanges: this.policy?.changes ?? 0,
      codecTrace: this.trace,
    };
  }
}

/** `libIs`: "libzstd.so.1 is not", "neither A nor B is". */
function cannotDecode(codec: string, libIs: string, pkg: string, instead: string) {
  return systemError(`receiver cannot decode ${codec}: ${libIs} available on the receiving host (install ${pkg} there, or send with ${instead})`);
}

/** Receiver: the codecs this host can decode (FEATURE_* bits for HELLO_ACK); a missing library only clears its bit. */
export function receiverDecodes(): number {
  let features = 0;
  try {
    loadLz4();
    features |= FEATURE_LZ4;
  } catch {
    // the sender learns it from HELLO_ACK and keeps to what is left, or says what is missing
  }
  try {
    loadZstd();
    features |= FEATURE_ZSTD;
  } catch {
    // as above
  }
  return features;
}
