// `bun run demo`: l2pipe next to a plain TCP pipe on the same two links, on this machine alone.
//
// Two network namespaces ("hosts") joined by two veth pairs shaped like two 1 GbE cables. A few
// hundred MiB of real data (a tar of /usr) go through l2pipe over both links, then through socat
// (TCP, one connection, so one link) over the first. Prints both throughputs, their ratio, the
// compression ratio and the sha256 check of each; exits non-zero if a transfer or a check fails.
// Everything it creates (namespaces, veths, temporary files, processes) is removed at the end,
// also after a failure or Ctrl-C.
//
//   bun run demo                                   (as root; builds dist/l2pipe first)
//   bun scripts/demo.ts [--size MiB] [--rate MBIT]  (defaults 256 and 1000; --rate 0 = unshaped)

import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addAddress, cleanupAll, createTopology, makeCompressibleFile, sha256File, type Topology } from "../test/support/netns";

const BINARY = new URL("../dist/l2pipe", import.meta.url).pathname;
// Only inside the demo's own namespaces.
const TCP_A = "10.78.0.1";
const TCP_B = "10.78.0.2";
const TCP_PORT = 7878;

interface Args {
  sizeMiB: number;
  rateMbit: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { sizeMiB: 256, rateMbit: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const [k, v] = [argv[i], argv[i + 1]];
    const n = Number(v);
    if ((k === "--size" || k === "--rate") && v !== undefined && Number.isFinite(n) && n >= 0) {
      if (k === "--size") args.sizeMiB = Math.max(1, Math.round(n));
      else args.rateMbit = Math.round(n);
      i++;
    } else {
      console.error(`demo: unknown argument ${k} (use --size MiB, --rate MBIT; --rate 0 = unshaped)`);
      process.exit(2);
    }
  }
  return args;
}

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s = "") => console.log(s);
const mb = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

interface Outcome {
  ok: boolean;
  ms: number;
  sha: string;
  detail: string;
}

/** Waits for both ends; a receiver left waiting by a sender that failed is stopped after graceMs. */
async function bothExited(sender: Bun.Subprocess, receiver: Bun.Subprocess, graceMs: number): Promise<[number, number]> {
  const sCode = await sender.exited;
  const timer = sCode === 0 ? null : setTimeout(() => receiver.kill("SIGTERM"), graceMs);
  const rCode = await receiver.exited;
  if (timer) clearTimeout(timer);
  return [sCode, rCode];
}

/** The output's sha256, then the output is gone (it is as large as the input). */
async function digest(path: string): Promise<string> {
  try {
    return await sha256File(path);
  } catch {
    return "(no output)";
  } finally {
    rmSync(path, { force: true });
  }
}

// The receivers write to a file and the check comes afterwards: hashing on the fly would take a
// core of this machine away from the transfer being measured.
async function runL2pipe(topo: Topology, input: string, bytes: number, statsPath: string, out: string): Promise<Outcome> {
  // Receiver first (it waits for the sender as long as it takes); its -v summary is held back
  // and shown after the sender's, so the two never mix on the terminal.
  const receiver = topo.spawn(topo.nsB, [BINARY, "-r", "-v", ...topo.devsB], { stdout: Bun.file(out), stderr: "pipe" });
  const receiverErr = new Response(receiver.stderr).text();
  const t0 = performance.now();
  const sender = topo.spawn(
    topo.nsA,
    [BINARY, "-s", "-p", "-v", "--size", String(bytes), "--stats-json", statsPath, ...topo.devsA],
    { stdin: Bun.file(input), stdout: "ignore", stderr: "inherit" },
  );
  // A sender that failed after contact has told the receiver (ABORT); one that failed before
  // never will, and the receiver would wait for a sender forever.
  const [sCode, rCode] = await bothExited(sender, receiver, 2000);
  const ms = performance.now() - t0;
  process.stderr.write(await receiverErr);
  const ok = sCode === 0 && rCode === 0;
  return { ok, ms, sha: await digest(out), detail: ok ? "" : `sender exit ${sCode}, receiver exit ${rCode}` };
}

async function runTcp(topo: Topology, input: string, out: string): Promise<Outcome> {
  await addAddress(topo.nsA, topo.devsA[0]!, `${TCP_A}/24`);
  await addAddress(topo.nsB, topo.devsB[0]!, `${TCP_B}/24`);
  const receiver = topo.spawn(topo.nsB, ["socat", "-u", `TCP-LISTEN:${TCP_PORT},bind=${TCP_B},reuseaddr`, "STDOUT"], {
    stdout: Bun.file(out),
    stderr: "pipe",
  });
  const t0 = performance.now();
  // retry: connects as soon as the listener is up, without guessing a delay.
  const sender = topo.spawn(
    topo.nsA,
    ["socat", "-u", "STDIN", `TCP:${TCP_B}:${TCP_PORT},bind=${TCP_A},retry=100,interval=0.05`],
    { stdin: Bun.file(input), stdout: "ignore", stderr: "pipe" },
  );
  const [sCode, rCode] = await bothExited(sender, receiver, 1000);
  const ms = performance.now() - t0;
  const ok = sCode === 0 && rCode === 0;
  const err = ok ? "" : `${await new Response(sender.stderr).text()} ${await new Response(receiver.stderr).text()}`.trim();
  return { ok, ms, sha: await digest(out), detail: ok ? "" : `socat exit ${sCode}/${rCode} ${err}` };
}

function need(cmd: string, pkg: string): boolean {
  if (Bun.which(cmd)) return true;
  console.error(`demo: '${cmd}' is missing: apt-get install ${pkg}`);
  return false;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    console.error("demo: run it as root: it creates network namespaces and raw sockets");
    return 2;
  }
  try {
    statSync(BINARY);
  } catch {
    console.error(`demo: ${BINARY} is missing: run 'bun run build' first (bun run demo does)`);
    return 2;
  }
  if (!need("ip", "iproute2") || !need("tc", "iproute2") || !need("tar", "tar")) return 2;
  const haveSocat = Bun.which("socat") !== null;

  const work = mkdtempSync(join(tmpdir(), "l2pipe-demo-"));
  // The namespaces are swept by test/support/netns.ts on exit, SIGINT and SIGTERM; the files here.
  process.on("exit", (code) => {
    rmSync(work, { recursive: true, force: true });
    if (code === 130 || code === 143) console.error("\ndemo: interrupted; its namespaces, processes and files are removed");
  });
  // Also while the data is being made, before netns.ts has its own handlers: exit runs the above.
  process.once("SIGINT", () => process.exit(130));
  process.once("SIGTERM", () => process.exit(143));

  const bytes = args.sizeMiB << 20;
  const links =
    args.rateMbit > 0
      ? `two veth pairs shaped to ${args.rateMbit} Mbit/s each${args.rateMbit === 1000 ? " (like two 1 GbE cables)" : ""}`
      : "two unshaped veth pairs";
  say(bold(`l2pipe demo: ${args.sizeMiB} MiB of /usr as a tar, between two network namespaces joined by ${links}`));
  const input = join(work, "usr.tar");
  process.stdout.write(`making the data (tar -c /usr, ${args.sizeMiB} MiB) ... `);
  await makeCompressibleFile(input, bytes);
  const inSha = await sha256File(input);
  say(`sha256 ${inSha.slice(0, 16)}...`);

  const topo = await createTopology([{ mtu: 1500, rateMbit: args.rateMbit || undefined }, { mtu: 1500, rateMbit: args.rateMbit || undefined }]);
  try {
    say(`namespaces ${topo.nsA} (sender) and ${topo.nsB} (receiver); links ${topo.devsA[0]}-${topo.devsB[0]}, ${topo.devsA[1]}-${topo.devsB[1]}`);
    say();
    say(bold(`1. l2pipe over both links`));
    say(`   ${topo.nsB}: l2pipe -r -v ${topo.devsB.join(" ")} > l2pipe.out`);
    say(`   ${topo.nsA}: l2pipe -s -p -v --size ${bytes} ${topo.devsA.join(" ")} < usr.tar`);
    const statsPath = join(work, "sender.json");
    const l2 = await runL2pipe(topo, input, bytes, statsPath, join(work, "l2pipe.out"));
    let ratio = NaN;
    let ownMs = NaN;
    let codecs = "compressed";
    try {
      const s = (await Bun.file(statsPath).json()) as {
        inputBytes: number; wireBytes: number; elapsedMs: number; ok: boolean; compression?: { codecs?: Record<string, unknown> } | null;
      };
      ratio = s.wireBytes / s.inputBytes;
      if (s.ok) ownMs = s.elapsedMs;
      // The codecs the adaptive policy used for this stream (lz4, zstd levels); none at all on
      // links faster than compressing would feed them (auto's probe, e.g. with --rate 0).
      const used = Object.keys(s.compression?.codecs ?? {});
      codecs = used.length ? used.join(" + ") : "sent as is";
    } catch {
      // no stats: the transfer failed before the end; reported below
    }

    say();
    let tcp: Outcome | null = null;
    if (haveSocat) {
      say(bold(`2. plain TCP (socat, one connection) over the first link`));
      say(`   ${topo.nsB}: socat -u TCP-LISTEN:${TCP_PORT},bind=${TCP_B} STDOUT > tcp.out`);
      say(`   ${topo.nsA}: socat -u STDIN TCP:${TCP_B}:${TCP_PORT} < usr.tar`);
      tcp = await runTcp(topo, input, join(work, "tcp.out"));
    } else {
      say(bold("2. plain TCP: skipped, socat is not installed (apt-get install socat)"));
    }

    const l2ok = l2.ok && l2.sha === inSha;
    const tcpOk = tcp ? tcp.ok && tcp.sha === inSha : true;
    const verdict = (o: Outcome) => (o.ok && o.sha === inSha ? "PASS" : `FAIL${o.detail ? ` (${o.detail})` : ""}${o.ok ? " (sha256 differs)" : ""}`);
    say();
    say(bold("summary"));
    say(`  data            ${args.sizeMiB} MiB (tar of /usr), sha256 ${inSha.slice(0, 16)}...`);
    // A failed run has no throughput worth printing.
    const speed = (o: Outcome) => (o.ok ? `${mb(bytes, o.ms).toFixed(1).padStart(7)} MB/s` : "      - MB/s");
    say(`  l2pipe          ${speed(l2)}  (${(l2.ms / 1000).toFixed(2)} s, 2 links, ${codecs})   sha256 ${verdict(l2)}`);
    if (Number.isFinite(ownMs)) say(`                  ${mb(bytes, ownMs).toFixed(1).padStart(7)} MB/s  (${(ownMs / 1000).toFixed(2)} s as the sender counts it, without start-up)`);
    if (tcp) {
      say(`  TCP (socat)     ${speed(tcp)}  (${(tcp.ms / 1000).toFixed(2)} s, 1 link)          sha256 ${verdict(tcp)}`);
      say(`  ratio           ${l2.ok && tcp.ok ? `${(tcp.ms / l2.ms).toFixed(2)}x` : "-"}  (l2pipe throughput / TCP throughput)`);
    } else {
      say("  TCP (socat)     not run: apt-get install socat");
    }
    say(`  compression     ${Number.isFinite(ratio) ? `${ratio.toFixed(3)} (wire bytes / input bytes)` : "unknown (no statistics)"}`);
    const ok = l2ok && tcpOk;
    say(bold(ok ? "PASS" : "FAIL"));
    return ok ? 0 : 1;
  } finally {
    await topo.cleanup();
  }
}

main().then(
  async (code) => {
    await cleanupAll();
    process.exit(code);
  },
  async (e: unknown) => {
    console.error(`demo: ${e instanceof Error ? e.message : String(e)}`);
    await cleanupAll();
    process.exit(1);
  },
);
