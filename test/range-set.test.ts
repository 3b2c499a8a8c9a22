// RangeSet: the sorted, bounded set of half-open ranges both protocol cores keep.
import { describe, expect, test } from "bun:test";
import { RangeSet } from "../src/core/range-set";
import { Rng } from "./support/impair";

/** The ranges as [start, end) pairs, lowest first. */
function ranges(s: RangeSet): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < s.count; i++) out.push([s.start(i), s.end(i)]);
  return out;
}

function setOf(capacity: number, ...rs: [number, number][]): RangeSet {
  const s = new RangeSet(capacity);
  for (const [a, b] of rs) expect(s.add(a, b)).toBe(true);
  return s;
}

describe("RangeSet", () => {
  test("add keeps ranges sorted and disjoint, merging overlapping and touching ones", () => {
    const s = setOf(8, [10, 20], [30, 40], [0, 5]);
    expect(ranges(s)).toEqual([[0, 5], [10, 20], [30, 40]]);
    s.add(20, 25); // touches [10, 20) from above
    expect(ranges(s)).toEqual([[0, 5], [10, 25], [30, 40]]);
    s.add(7, 10); // touches [10, 25) from below
    expect(ranges(s)).toEqual([[0, 5], [7, 25], [30, 40]]);
    s.add(3, 32); // swallows one range, overlaps two
    expect(ranges(s)).toEqual([[0, 40]]);
    s.add(12, 18); // inside: nothing changes
    expect(ranges(s)).toEqual([[0, 40]]);
    expect(s.add(50, 50)).toBe(true); // empty range: nothing added
    expect(s.add(60, 55)).toBe(true);
    expect(ranges(s)).toEqual([[0, 40]]);
  });

  test("contains is true only for a range inside one stored range", () => {
    const s = setOf(8, [10, 20], [30, 40]);
    expect(s.contains(10, 20)).toBe(true);
    expect(s.contains(12, 13)).toBe(true);
    expect(s.contains(30, 40)).toBe(true);
    expect(s.contains(9, 11)).toBe(false);
    expect(s.contains(19, 21)).toBe(false);
    expect(s.contains(15, 35)).toBe(false); // spans the gap
    expect(s.contains(20, 21)).toBe(false); // just above the first
    expect(s.contains(25, 26)).toBe(false);
    expect(s.contains(40, 41)).toBe(false);
    expect(new RangeSet(4).contains(0, 1)).toBe(false);
  });

  test("trimBelow drops whole ranges below the value and cuts the one it falls in", () => {
    const s = setOf(8, [0, 5], [10, 20], [30, 40]);
    s.trimBelow(5); // [0, 5) ends at 5: nothing of it is at or above 5
    expect(ranges(s)).toEqual([[10, 20], [30, 40]]);
    s.trimBelow(7); // in a gap
    expect(ranges(s)).toEqual([[10, 20], [30, 40]]);
    s.trimBelow(15);
    expect(ranges(s)).toEqual([[15, 20], [30, 40]]);
    s.trimBelow(35);
    expect(ranges(s)).toEqual([[35, 40]]);
    s.trimBelow(100);
    expect(ranges(s)).toEqual([]);
    s.trimBelow(200); // on an empty set
    expect(s.count).toBe(0);
  });

  test("dropFirst removes the lowest range", () => {
    const s = setOf(8, [0, 5], [10, 20], [30, 40]);
    s.dropFirst();
    expect(ranges(s)).toEqual([[10, 20], [30, 40]]);
    s.dropFirst();
    s.dropFirst();
    expect(ranges(s)).toEqual([]);
    s.dropFirst(); // on an empty set
    expect(s.count).toBe(0);
    expect(s.add(1, 2)).toBe(true);
    expect(ranges(s)).toEqual([[1, 2]]);
  });

  test("full: a range needing a slot of its own is refused and changes nothing; merging still works", () => {
    const s = setOf(3, [0, 1], [10, 11], [20, 21]);
    expect(s.add(5, 6)).toBe(false);
    expect(s.add(30, 31)).toBe(false);
    expect(s.add(-5, -4)).toBe(false);
    expect(ranges(s)).toEqual([[0, 1], [10, 11], [20, 21]]);
    expect(s.add(11, 15)).toBe(true); // touches one
    expect(s.add(1, 10)).toBe(true); // joins two: a slot is free again
    expect(ranges(s)).toEqual([[0, 15], [20, 21]]);
    expect(s.add(30, 31)).toBe(true);
    expect(ranges(s)).toEqual([[0, 15], [20, 21], [30, 31]]);
  });

  test("random operations agree with a bitmap of the numbers 0..199", () => {
    const r = new Rng(7);
    for (let round = 0; round < 200; round++) {
      const capacity = r.int(1, 6);
      const s = new RangeSet(capacity);
      const bits = new Uint8Array(200);
      for (let op = 0; op < 60; op++) {
        const a = r.int(0, 199);
        const b = Math.min(200, a + r.int(0, 12));
        const what = r.int(0, 9);
        if (what < 6) {
          const before = ranges(s);
          const ok = s.add(a, b);
          if (ok) bits.fill(1, a, b);
          else expect(ranges(s)).toEqual(before);
          // Refused only when full and [a, b) touches no stored range.
          const touches = before.some(([x, y]) => x <= b && a <= y);
          expect(ok).toBe(b <= a || touches || before.length < capacity);
        } else if (what < 8) {
          s.trimBelow(a);
          bits.fill(0, 0, a);
        } else {
          if (s.count > 0) bits.fill(0, s.start(0), s.end(0));
          s.dropFirst();
        }
        // The model's runs of ones are exactly the stored ranges.
        const runs: [number, number][] = [];
        for (let i = 0; i < 200; i++) {
          if (!bits[i]) continue;
          let j = i;
          while (j < 200 && bits[j]) j++;
          runs.push([i, j]);
          i = j;
        }
        expect(ranges(s)).toEqual(runs);
        if (b > a) expect(s.contains(a, b)).toBe(bits.subarray(a, b).every((x) => x === 1));
      }
    }
  });
});
