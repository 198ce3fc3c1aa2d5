; A numba allocation: the MemInfo keeps the data pointer at byte 24. Copying
; x (doubles) into the buffer makes the buffer, the data pointer and the
; MemInfo's field all hold doubles.
; seed %x: []:Pointer, [-1]:Float@double
define void @fill(ptr %x, ptr %meminfo, i64 %n) {
entry:
  %field = getelementptr i8, ptr %meminfo, i64 24
  %data = load ptr, ptr %field, align 8
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %from = getelementptr double, ptr %x, i64 %i
  %value = load double, ptr %from, align 8
  %to = getelementptr double, ptr %data, i64 %i
  store double %value, ptr %to, align 8
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}
