// nftables netdev rules on a veth inside a test namespace: random drop and duplication of
// l2pipe frames (ethertype 0x88b5) done by the kernel, for tests that need no bridge process.
// This kernel has no netem and no tc gact; netdev ingress/egress hooks work (platform notes).
//
// Rules live in one table per namespace (namespaces are per topology, so the table is too) and
// disappear with the namespace. Each rule carries a counter, so a test can check what it did.

export type Hook = "ingress" | "egress";

export interface NftRule {
  ns: string;
  table: string;
  chain: string;
  handle: number;
  /** Frames the rule acted on so far. */
  packets(): Promise<number>;
  remove(): Promise<void>;
}

async function nft(ns: string, args: string[]): Promise<string> {
  const p = Bun.spawn(["ip", "netns", "exec", ns, "nft", ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`nft ${args.join(" ")} (in ${ns}) failed: ${err.trim()}`);
  return out;
}

function tableName(ns: string): string {
  return `impair_${ns.replace(/[^A-Za-z0-9_]/g, "_")}`;
}

// Name validation keeps quoting trivial: these end up inside nft syntax.
function checkDev(dev: string): void {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(dev)) throw new Error(`nft: bad device name ${JSON.stringify(dev)}`);
}

/** Ensures table and base chain exist; `add` is idempotent for identical definitions. */
async function ensureChain(ns: string, dev: string, hook: Hook): Promise<{ table: string; chain: string }> {
  checkDev(dev);
  const table = tableName(ns);
  const chain = `${hook}_${dev.replace(/[^A-Za-z0-9_]/g, "_")}`;
  await nft(ns, ["add", "table", "netdev", table]);
  await nft(ns, ["add", "chain", "netdev", table, chain, `{ type filter hook ${hook} device "${dev}" priority 0; }`]);
  return { table, chain };
}

/** `numgen random mod 10000 < N` gives 0.01 % steps; whole percents behave as `mod 100 < N`. */
function chance(percent: number): string {
  if (!(percent >= 0 && percent <= 100)) throw new Error(`nft: percent ${percent} out of range 0..100`);
  return `numgen random mod 10000 < ${Math.round(percent * 100)}`;
}

async function addRule(ns: string, table: string, chain: string, rule: string): Promise<NftRule> {
  const out = await nft(ns, ["--echo", "--handle", "add", "rule", "netdev", table, chain, rule]);
  const m = /# handle (\d+)/.exec(out);
  if (!m) throw new Error(`nft: no rule handle in ${JSON.stringify(out)}`);
  const handle = Number(m[1]);
  return {
    ns,
    table,
    chain,
    handle,
    async packets() {
      const list = JSON.parse(await nft(ns, ["-j", "list", "chain", "netdev", table, chain])) as {
        nftables: Array<{ rule?: { handle: number; expr: Array<{ counter?: { packets: number } }> } }>;
      };
      for (const item of list.nftables) {
        if (item.rule?.handle !== handle) continue;
        for (const e of item.rule.expr) if (e.counter) return e.counter.packets;
      }
      throw new Error(`nft: rule ${handle} not found in ${table}/${chain}`);
    },
    async remove() {
      await nft(ns, ["delete", "rule", "netdev", table, chain, "handle", String(handle)]);
    },
  };
}

/** Drops `percent` % of 0x88b5 frames entering (ingress) or leaving (egress) dev.
 * Caveat, measured: an egress drop of a frame sent by a packet socket on that same device is not a
 * silent loss: send()/sendmmsg() fails with ENOBUFS and PacketSocket.flush() keeps the frame for
 * the next flush, so it is retried. For real loss, drop on the ingress of the receiving end (or
 * on a device the frames only pass through in the kernel). */
export async function addDropRule(ns: string, dev: string, percent: number, hook: Hook): Promise<NftRule> {
  const { table, chain } = await ensureChain(ns, dev, hook);
  return addRule(ns, table, chain, `ether type 0x88b5 ${chance(percent)} counter drop`);
}

/** Drops every l2pipe DATA frame (type byte at offset 23) entering dev, and nothing else: a path
 * that passes the handshake, probes and acknowledgements but no data. */
export async function addDropDataRule(ns: string, dev: string): Promise<NftRule> {
  const { table, chain } = await ensureChain(ns, dev, "ingress");
  return addRule(ns, table, chain, `ether type 0x88b5 @ll,184,8 3 counter drop`);
}

// A copy sent by `dup to` passes the egress hook again and would itself be duplicated (measured:
// p/(1-p) extra copies instead of p, and the kernel's recursion limit silently drops third-level
// copies after the counter saw them). The mark, which both copies carry, stops that.
const DUP_MARK = "0x4c32";

/** Duplicates `percent` % of 0x88b5 frames leaving dev: the copy goes out of toDev (often dev
 * itself), once. */
export async function addDupRule(ns: string, dev: string, percent: number, toDev: string): Promise<NftRule> {
  checkDev(toDev);
  const { table, chain } = await ensureChain(ns, dev, "egress");
  return addRule(
    ns,
    table,
    chain,
    `ether type 0x88b5 meta mark != ${DUP_MARK} ${chance(percent)} meta mark set ${DUP_MARK} counter dup to "${toDev}"`,
  );
}

/** Removes every rule these helpers added in ns (the namespace going away does it too). */
export async function flushRules(ns: string): Promise<void> {
  const table = tableName(ns);
  const out = await nft(ns, ["list", "tables"]);
  if (out.includes(`table netdev ${table}`)) await nft(ns, ["delete", "table", "netdev", table]);
}
