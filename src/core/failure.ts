// Why a run failed, as the cores find it: typed values, worded for the user by the shells
// (src/shell/failure-text.ts), which know the devices' names.

export type Failure =
  /** No peer answered within the -w wait; links are indices (the sender's links, the receiver's
   * devices), busyLinks those on which a receiver said it is busy with another transfer. */
  | { kind: "no-peer"; links: number[]; waitedMs: number; busyLinks: number[] }
  /** Nothing heard from the peer on any of these links for ms. */
  | { kind: "peer-lost"; links: number[]; ms: number }
  /** Data owed and nothing acknowledged for ms although the receiver answers on links;
   * sizes: the frame size in use per link (0: none proven). */
  | { kind: "no-progress"; links: number[]; sizes: number[]; ms: number }
  /** The peer sent ABORT with this reason. */
  | { kind: "aborted"; reason: string }
  /** Anything else, already worded. */
  | { kind: "message"; text: string };
