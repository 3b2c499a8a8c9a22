// The shapes of docs/bench-results.json.

/** changing: 64 MiB of compressible data, then 64 MiB of random, and so on. */
export type Data = "random" | "compressible" | "changing";
export type Tool = "l2pipe" | "tcp" | "lz4+tcp" | "zstd+tcp";

export interface SideCost {
  /** exit status (first non-zero of the side's processes) */
  code: number;
  /** user + system seconds of the side's processes */
  cpuS: number;
  cpuSPerGiB: number;
  rssMiB: number;
  method: "gnu-time" | "wait4";
}

export interface RunResult {
  ok: boolean;
  failure: string | null;
  /** from the sender's start until both sides have exited */
  wallS: number;
  /** input MB (1e6 bytes) per wall second */
  mbps: number;
  /** l2pipe only: the sender's own "done in X s" (-v) */
  selfS: number | null;
  selfMbps: number | null;
  /** l2pipe only: wire bytes / input bytes (compression) */
  wireRatio: number | null;
  /** l2pipe only: frames resent / frames sent, % */
  resentPct: number | null;
  /** l2pipe only: share of the wire bytes per link */
  linkShare: number[] | null;
  /** l2pipe with auto compression, data "changing": per 64 MiB segment of input, ms from its
   * first byte read to the policy's last codec change within it (0: none), and the codec that
   * compressed most of it. */
  settle?: Array<{ segment: number; kind: "text" | "random"; settleMs: number; codec: string }> | null;
  sha256Ok: boolean;
  sender: SideCost;
  receiver: SideCost;
}

export interface Scenario {
  id: string;
  /** a: one unshaped veth; b: n links of 1 Gbit; c: 1 + 1.5 Gbit; d: codecs over 1 x 1 Gbit and 1 + 1.5 Gbit */
  group: "a" | "b" | "c" | "d";
  mtu: number;
  /** htb rate per link (Mbit/s), null = unshaped */
  rates: (number | null)[];
  linksDesc: string;
  /** sum of the htb rates, null when any link is unshaped */
  capacityMbit: number | null;
  data: Data;
  tool: Tool;
  args: string[];
  label: string;
  runs: RunResult[];
}

export interface BenchResults {
  meta: {
    date: string;
    durationS: number;
    mode: "quick" | "full";
    runs: number;
    inputMiB: number;
    mtus: number[];
    host: { cpu: string; cores: number; memGiB: number; kernel: string; loadavgBefore: number[]; loadavgAfter: number[] };
    versions: Record<string, string>;
    measurement: Record<string, string>;
  };
  summary: string[];
  scenarios: Scenario[];
}
