; x[i] = x[i] * x[i] overwrites what it read: the old value is cached, one per element.
; duplicated: 2
define i32 @inplace_square(ptr %retptr, ptr %excinfo, ptr %x, i64 %n) {
entry:
  %empty = icmp slt i64 %n, 1
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %address = getelementptr double, ptr %x, i64 %i
  %value = load double, ptr %address, align 8
  %square = fmul double %value, %value
  store double %square, ptr %address, align 8
  %next = add nuw nsw i64 %i, 1
  %finished = icmp eq i64 %next, %n
  br i1 %finished, label %done, label %loop
done:
  ret i32 0
}
