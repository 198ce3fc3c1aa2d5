; As constant_inputs.ll, but the arrays may overlap: the store into scratch
; may overwrite x and y, so what the reverse sweep needs of them is cached
; instead of re-loaded: y, and exp(x) rather than x (same slots, no second exp).
; duplicated: 2
; returns: double
define i32 @overlapping_arguments(ptr %retptr, ptr %excinfo, ptr %x, ptr %y, ptr %scratch, i64 %n) {
entry:
  %empty = icmp slt i64 %n, 1
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %s = phi double [ 0.0, %entry ], [ %s.next, %loop ]
  %count = phi i64 [ 0, %entry ], [ %count.next, %loop ]
  %x.address = getelementptr double, ptr %x, i64 %i
  %x.value = load double, ptr %x.address, align 8
  %y.address = getelementptr double, ptr %y, i64 %i
  %y.value = load double, ptr %y.address, align 8
  %growth = call double @llvm.exp.f64(double %x.value)
  %term = fmul double %growth, %y.value
  %s.next = fadd double %s, %term
  %unused = fmul double %y.value, %y.value
  %scratch.address = getelementptr double, ptr %scratch, i64 %i
  store double %unused, ptr %scratch.address, align 8
  %count.next = add i64 %count, 1
  %next = add nuw nsw i64 %i, 1
  %finished = icmp eq i64 %next, %n
  br i1 %finished, label %done, label %loop
done:
  %result = phi double [ 0.0, %entry ], [ %s.next, %loop ]
  store double %result, ptr %retptr, align 8
  ret i32 0
}

declare double @llvm.exp.f64(double)
