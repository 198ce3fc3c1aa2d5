; s = s * a + sin(s): each step needs the old s, which a phi overwrites: one
; double per step on the tape; a is a parameter and needs no cache.
; active: 2
; returns: double
define i32 @recurrence(ptr %retptr, ptr %excinfo, double %a, i64 %n) {
entry:
  %empty = icmp slt i64 %n, 1
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %s = phi double [ 1.0, %entry ], [ %s.next, %loop ]
  %scaled = fmul double %s, %a
  %wave = call double @llvm.sin.f64(double %s)
  %s.next = fadd double %scaled, %wave
  %next = add nuw nsw i64 %i, 1
  %finished = icmp eq i64 %next, %n
  br i1 %finished, label %done, label %loop
done:
  %result = phi double [ 1.0, %entry ], [ %s.next, %loop ]
  store double %result, ptr %retptr, align 8
  ret i32 0
}

declare double @llvm.sin.f64(double)
