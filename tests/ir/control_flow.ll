; br, conditional br, switch, phi, select, unreachable and a loop.
define double @control(i64 %n, double %x) {
entry:
  %positive = icmp sgt i64 %n, 0
  br i1 %positive, label %loop, label %exit
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %latch ]
  %acc = phi fast double [ 0.000000e+00, %entry ], [ %acc.next, %latch ]
  %mode = urem i64 %i, 3
  switch i64 %mode, label %other [
    i64 0, label %zero
    i64 1, label %one
  ]
zero:
  %a0 = fadd double %acc, %x
  br label %latch
one:
  %a1 = fmul double %acc, %x
  br label %latch
other:
  %big = fcmp ogt double %acc, 1.000000e+06
  %a2 = select nnan i1 %big, double 0.000000e+00, double %acc
  br label %latch
latch:
  %acc.next = phi double [ %a0, %zero ], [ %a1, %one ], [ %a2, %other ]
  %next = add nuw nsw i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %loop
exit:
  %result = phi double [ 0.000000e+00, %entry ], [ %acc.next, %latch ]
  %bad = fcmp uno double %result, %result
  br i1 %bad, label %trap, label %ok
trap:
  unreachable
ok:
  ret double %result
}
