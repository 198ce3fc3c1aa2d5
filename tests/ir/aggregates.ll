; insertvalue / extractvalue on nested aggregates, vector element access, freeze, constants.
define double @aggregates(double %x, i64 %n) {
entry:
  %s0 = insertvalue { i64, [2 x double] } undef, i64 %n, 0
  %s1 = insertvalue { i64, [2 x double] } %s0, double %x, 1, 0
  %s2 = insertvalue { i64, [2 x double] } %s1, double 2.500000e+00, 1, 1
  %a = extractvalue { i64, [2 x double] } %s2, 1, 0
  %b = extractvalue { i64, [2 x double] } %s2, 1, 1
  %k = insertvalue { i64, [2 x double] } { i64 1, [2 x double] [double 1.000000e+00, double 2.000000e+00] }, i64 %n, 0
  %kb = extractvalue { i64, [2 x double] } %k, 1, 1
  %z = extractvalue { i64, [2 x double] } zeroinitializer, 1, 0
  %v0 = insertelement <2 x double> <double 1.000000e+00, double 2.000000e+00>, double %a, i32 0
  %v1 = fadd <2 x double> %v0, splat (double 1.000000e+00)
  %e = extractelement <2 x double> %v1, i64 1
  %f = freeze double %e
  %p = fadd double %b, %f
  %q = fadd double %p, %kb
  %r = fadd double %q, %z
  ret double %r
}
