// The words for a Failure the cores report (src/core/failure.ts): the same sentences on both
// sides, with the devices' names, which only the shells know.

import type { Failure } from "../core/failure";
import { secondsText } from "../core/timing";

/** Which end is talking: it names the other one. */
export type Side = "send" | "receive";

export function failureText(f: Failure, side: Side, deviceName: (link: number) => string): string {
  const names = (links: number[]) => links.map(deviceName).join(", ");
  const peer = side === "send" ? "receiver" : "sender";
  switch (f.kind) {
    case "no-peer":
      if (side === "receive") return `no sender appeared on ${names(f.links)} within ${secondsText(f.waitedMs)}`;
      return f.busyLinks.length > 0
        ? `no free receiver on ${names(f.links)} within ${secondsText(f.waitedMs)}: the receiver on ${names(f.busyLinks)} is busy with another transfer`
        : `no receiver answered on ${names(f.links)} within ${secondsText(f.waitedMs)} (is 'l2pipe -r' running on the other host?)`;
    case "peer-lost":
      return `${peer} lost: nothing heard on ${names(f.links)} for ${secondsText(f.ms)}`;
    case "no-progress": {
      const sizes = f.sizes.map((s) => (s > 0 ? `${s}` : "none")).join(", ");
      return `no progress for ${secondsText(f.ms)}: the receiver answers on ${names(f.links) || "no link"} but acknowledges none ` +
        `of the data sent since (frame size in use: ${sizes}); the path between the hosts drops DATA frames`;
    }
    case "aborted":
      return `${peer} aborted: ${f.reason}`;
    case "message":
      return f.text;
  }
}
