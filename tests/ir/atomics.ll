; The atomics numba's reference counting uses.
define i64 @atomics(ptr %counter, i64 %expected) {
entry:
  %old = atomicrmw add ptr %counter, i64 1 monotonic, align 8
  %older = atomicrmw volatile sub ptr %counter, i64 1 seq_cst, align 8
  fence release
  %pair = cmpxchg ptr %counter, i64 %expected, i64 %old acq_rel monotonic, align 8
  %weak = cmpxchg weak ptr %counter, i64 %old, i64 %older seq_cst seq_cst, align 8
  %value = extractvalue { i64, i1 } %pair, 0
  fence acquire
  ret i64 %value
}
