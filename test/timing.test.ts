// expandPn: a full packet number from the low 32 bits on the wire and the number expected.
import { describe, expect, test } from "bun:test";
import { expandPn, secondsText } from "../src/core/timing";
import { TWO32 } from "../src/wire";
import { Rng } from "./support/impair";

describe("expandPn", () => {
  test("within the first 2^32 it is the wire value", () => {
    expect(expandPn(0, 0)).toBe(0);
    expect(expandPn(7, 0)).toBe(7);
    expect(expandPn(0, 7)).toBe(0);
    expect(expandPn(123_456, 100_000)).toBe(123_456);
    // expected -1: nothing acknowledged yet on that link
    expect(expandPn(0, -1)).toBe(0);
    expect(expandPn(3, -1)).toBe(3);
  });

  test("near 0, a number that would be nearest below 0 stays the wire value", () => {
    expect(expandPn(0xffff_ffff, 0)).toBe(0xffff_ffff);
    expect(expandPn(0xffff_fffe, 5)).toBe(0xffff_fffe);
    expect(expandPn(0xffff_ffff, -1)).toBe(0xffff_ffff);
  });

  test("wrap-around upwards: past 2^32 the low bits start again at 0", () => {
    expect(expandPn(2, TWO32 - 3)).toBe(TWO32 + 2);
    expect(expandPn(0, TWO32 - 1)).toBe(TWO32);
    expect(expandPn(5, 7 * TWO32 - 10)).toBe(7 * TWO32 + 5);
  });

  test("wrap-around downwards: a late number from before the wrap", () => {
    expect(expandPn(TWO32 - 3, TWO32 + 2)).toBe(TWO32 - 3);
    expect(expandPn(0xffff_ffff, TWO32)).toBe(TWO32 - 1);
    expect(expandPn(TWO32 - 10, 7 * TWO32 + 5)).toBe(7 * TWO32 - 10);
  });

  test("the nearest of the candidates wins, up to just under half a cycle either way", () => {
    const e = 3 * TWO32 + 0x4000_0000;
    const half = 2 ** 31;
    expect(expandPn((e + half - 1) % TWO32, e)).toBe(e + half - 1);
    expect(expandPn((e - half + 1) % TWO32, e)).toBe(e - half + 1);
    // One more and the other candidate (a cycle away) is the nearer.
    expect(expandPn((e + half + 1) % TWO32, e)).toBe(e + half + 1 - TWO32);
    expect(expandPn((e - half - 1) % TWO32, e)).toBe(e - half - 1 + TWO32);
  });

  test("random numbers within 2^31 of the expected one come back whole", () => {
    const r = new Rng(11);
    for (let i = 0; i < 100_000; i++) {
      const expected = i % 4 === 0 ? r.int(0, 1000) : r.int(0, 0xffffffff) * 2048 + r.int(0, 2047);
      const pn = expected + r.int(-0x7fff_ffff, 0x7fff_ffff);
      if (pn < 0) continue;
      const got = expandPn(pn % TWO32, expected);
      if (got !== pn) throw new Error(`expandPn(${pn % TWO32}, ${expected}) = ${got}, want ${pn}`);
    }
  });
});

describe("secondsText", () => {
  test("seconds as the user gave them", () => {
    expect(secondsText(5000)).toBe("5 s");
    expect(secondsText(300)).toBe("0.3 s");
    expect(secondsText(2500)).toBe("2.5 s");
    expect(secondsText(1234)).toBe("1.23 s");
    expect(secondsText(12_345)).toBe("12.3 s");
  });
});
