// ffi/ stands alone (it imports nothing from src/); src/ turns what it throws into exit codes.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Poller } from "../ffi/libc";
import { SystemError } from "../ffi/system-error";
import { EXIT_SYSTEM, fromFfi, L2Error } from "../src/errors";

const FFI = new URL("../ffi/", import.meta.url).pathname;

describe("ffi/ and its errors", () => {
  test("no file in ffi/ imports from src/", () => {
    const files = readdirSync(FFI).filter((f) => f.endsWith(".ts"));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const f of files) {
      const imports = [...readFileSync(join(FFI, f), "utf8").matchAll(/\bfrom\s+"([^"]+)"/g)].map((m) => m[1]!);
      expect({ file: f, fromSrc: imports.filter((i) => !i.startsWith("./") && !i.startsWith("bun:") && !i.startsWith("node:")) }).toEqual({ file: f, fromSrc: [] });
    }
  });

  test("a SystemError becomes an L2Error with EXIT_SYSTEM and the same message; anything else stays", () => {
    const mapped = fromFfi(new SystemError("eventfd failed: EMFILE (Too many open files)"));
    expect(mapped).toBeInstanceOf(L2Error);
    expect((mapped as L2Error).exitCode).toBe(EXIT_SYSTEM);
    expect((mapped as L2Error).message).toBe("eventfd failed: EMFILE (Too many open files)");
    const other = new Error("x");
    expect(fromFfi(other)).toBe(other);
    const l2 = new L2Error("y", 2);
    expect(fromFfi(l2)).toBe(l2);
  });

  test("a Poller slot out of range is a programming error, not the host's", () => {
    expect(() => new Poller(2).set(2, 0, 1)).toThrow(RangeError);
  });
});
