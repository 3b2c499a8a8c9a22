// A bounded, sorted set of disjoint half-open ranges [start, end) of numbers,
// stored in preallocated arrays so adding a range allocates nothing.

export class RangeSet {
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;
  count = 0;

  constructor(readonly capacity: number) {
    this.starts = new Float64Array(capacity);
    this.ends = new Float64Array(capacity);
  }

  start(i: number): number {
    return this.starts[i];
  }

  end(i: number): number {
    return this.ends[i];
  }

  clear(): void {
    this.count = 0;
  }

  /** Index of the first range whose end is >= value (ranges touching value merge with it). */
  private lowerBound(value: number): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid] < value) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  contains(start: number, end: number): boolean {
    const i = this.lowerBound(start);
    return i < this.count && this.starts[i] <= start && this.ends[i] >= end;
  }

  /**
   * Adds [start, end), merging with touching ranges. Returns false, changing nothing,
   * when the set is full and the range would need a slot of its own.
   */
  add(start: number, end: number): boolean {
    if (end <= start) return true;
    let i = this.lowerBound(start);
    // Ranges i..j-1 overlap or touch [start, end).
    let j = i;
    while (j < this.count && this.starts[j] <= end) j++;
    if (i === j) {
      if (this.count === this.capacity) return false;
      this.starts.copyWithin(i + 1, i, this.count);
      this.ends.copyWithin(i + 1, i, this.count);
      this.starts[i] = start;
      this.ends[i] = end;
      this.count++;
      return true;
    }
    const mergedStart = Math.min(start, this.starts[i]);
    const mergedEnd = Math.max(end, this.ends[j - 1]);
    this.starts[i] = mergedStart;
    this.ends[i] = mergedEnd;
    const removed = j - i - 1;
    if (removed > 0) {
      this.starts.copyWithin(i + 1, j, this.count);
      this.ends.copyWithin(i + 1, j, this.count);
      this.count -= removed;
    }
    return true;
  }

  /** Removes everything below value. */
  trimBelow(value: number): void {
    let drop = 0;
    while (drop < this.count && this.ends[drop] <= value) drop++;
    if (drop > 0) {
      this.starts.copyWithin(0, drop, this.count);
      this.ends.copyWithin(0, drop, this.count);
      this.count -= drop;
    }
    if (this.count > 0 && this.starts[0] < value) this.starts[0] = value;
  }

  /** Drops the lowest range (used where old information may be forgotten). */
  dropFirst(): void {
    if (this.count === 0) return;
    this.starts.copyWithin(0, 1, this.count);
    this.ends.copyWithin(0, 1, this.count);
    this.count--;
  }
}
