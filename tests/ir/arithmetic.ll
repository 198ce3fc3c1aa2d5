; Integer and float arithmetic with their flags, fneg, and constants of every spelling.
define double @arithmetic(double %x, double %y, i64 %n, i32 %m) {
entry:
  %a = fadd fast double %x, %y
  %b = fsub nnan ninf double %a, 1.500000e+00
  %c = fmul contract double %b, 0x3FB999999999999A
  %d = fdiv arcp double %c, %y
  %e = frem double %d, 3.000000e+00
  %f = fneg nsz double %e
  %i = add nsw i64 %n, 1
  %j = sub nuw nsw i64 %i, -7
  %k = mul i64 %j, %n
  %l = sdiv exact i64 %k, 2
  %o = udiv i64 %l, 3
  %p = srem i64 %o, 5
  %q = urem i64 %p, 7
  %r = shl nuw i64 %q, 2
  %s = lshr exact i64 %r, 1
  %t = ashr i64 %s, 1
  %u = and i64 %t, 255
  %v = or disjoint i64 %u, 256
  %w = xor i64 %v, -1
  %z = trunc nsw i64 %w to i32
  %zz = add i32 %z, %m
  %g = sitofp i32 %zz to double
  %h = fadd reassoc afn double %f, %g
  ret double %h
}
