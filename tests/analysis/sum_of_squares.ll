; A read-only array: every value the reverse sweep needs is re-loaded or
; recomputed from the loop counter; nothing goes on the tape.
; duplicated: 2
; returns: double
define i32 @sum_of_squares(ptr %retptr, ptr %excinfo, ptr %x, i64 %n) {
entry:
  %empty = icmp slt i64 %n, 1
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %s = phi double [ 0.0, %entry ], [ %s.next, %loop ]
  %address = getelementptr double, ptr %x, i64 %i
  %value = load double, ptr %address, align 8
  %square = fmul double %value, %value
  %s.next = fadd double %s, %square
  %next = add nuw nsw i64 %i, 1
  %finished = icmp eq i64 %next, %n
  br i1 %finished, label %done, label %loop
done:
  %result = phi double [ 0.0, %entry ], [ %s.next, %loop ]
  store double %result, ptr %retptr, align 8
  ret i32 0
}
