; Atomic loads and stores, sync scopes, floating-point atomicrmw (LLVM 22 spellings).
define double @atomics_scoped(ptr %counter, ptr %total, double %x) {
entry:
  %seen = load atomic i64, ptr %counter acquire, align 8
  %local = load atomic volatile i64, ptr %counter syncscope("singlethread") monotonic, align 8
  store atomic i64 %seen, ptr %counter release, align 8
  store atomic volatile i64 %local, ptr %counter syncscope("singlethread") seq_cst, align 8
  %old = atomicrmw fadd ptr %total, double %x syncscope("singlethread") monotonic, align 8
  %max = atomicrmw umax ptr %counter, i64 7 acq_rel, align 8
  %pair = cmpxchg ptr %counter, i64 %seen, i64 %max syncscope("singlethread") acquire monotonic, align 8
  fence syncscope("singlethread") acq_rel
  ret double %old
}
