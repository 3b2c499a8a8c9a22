// Timers and limits shared by both ends of the protocol. All times in milliseconds.

import { TWO32 } from "../wire";

export interface Timing {
  /** The peer silent on every link for this long fails the transfer. */
  peerTimeoutMs: number;
  /** One link silent for this long (while others work) is taken out of service. */
  linkDownMs: number;
  /** Something is sent on every link at least this often, so silence means trouble. */
  keepaliveMs: number;
  /** Repeat period of HELLO while a link has not been answered. */
  helloIntervalMs: number;
  /** The sender gives up when no receiver answered for this long (0: wait forever). */
  waitMs: number;
  /** After the first link answers, how long to wait for the others before starting. */
  gatherMs: number;
  /** Longest the receiver holds back an acknowledgement. */
  maxAckDelayMs: number;
  /** How long the receiver keeps repeating DONE for a sender that does not confirm. */
  lingerMs: number;
}

export function defaultTiming(peerTimeoutMs = 5000, waitMs = 30_000): Timing {
  return {
    peerTimeoutMs,
    linkDownMs: Math.max(300, Math.min(500, peerTimeoutMs / 5)),
    keepaliveMs: 100,
    helloIntervalMs: 100,
    waitMs,
    gatherMs: 300,
    maxAckDelayMs: 1,
    lingerMs: 2000,
  };
}

/** Milliseconds as the seconds a user gave: "0.3 s", "5 s", "2.5 s" (no "0 s" for -w 0.3). */
export function secondsText(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : Number(s.toFixed(s < 10 ? 2 : 1))} s`;
}

/** Restores a full packet number from its low 32 bits, choosing the one nearest to `expected`. */
export function expandPn(wire: number, expected: number): number {
  const base = expected - (expected % TWO32);
  let pn = base + wire;
  if (pn - expected > TWO32 / 2) pn -= TWO32;
  else if (expected - pn > TWO32 / 2) pn += TWO32;
  return pn < 0 ? wire : pn;
}
