; Calls (direct, tail, fast-math, attributes, intrinsics, varargs, indirect) and globals.
@table = internal constant [3 x double] [double 1.000000e+00, double 2.000000e+00, double 4.000000e+00], align 16
@message = private unnamed_addr constant [6 x i8] c"hello\00", align 1
@counter = global i64 0, align 8
@extern_thing = external global i8
@pointer_to_element = global ptr getelementptr inbounds ([3 x double], ptr @table, i64 0, i64 1)
@record = global { i32, ptr, <2 x float> } { i32 7, ptr @message, <2 x float> <float 1.000000e+00, float 5.000000e-01> }

declare double @llvm.sin.f64(double)
declare double @llvm.pow.f64(double, double)
declare double @sinh(double)
declare i32 @printf(ptr, ...)
declare void @llvm.memcpy.p0.p0.i64(ptr noalias writeonly, ptr noalias readonly, i64, i1 immarg)

define internal double @helper(double %x) noinline nounwind {
entry:
  %s = tail call fast double @llvm.sin.f64(double %x)
  %h = call double @sinh(double %s) #0
  %p = call nnan double @llvm.pow.f64(double %h, double 2.000000e+00)
  ret double %p
}

define double @calls(double %x, ptr %callback, ptr %out) {
entry:
  %a = call double @helper(double %x)
  %b = call double %callback(double %a)
  %n = call i32 (ptr, ...) @printf(ptr @message, double %b)
  %old = load i64, ptr @counter, align 8
  %new = add i64 %old, 1
  store i64 %new, ptr @counter, align 8
  call void @llvm.memcpy.p0.p0.i64(ptr %out, ptr @table, i64 24, i1 false)
  %t = load ptr, ptr @pointer_to_element, align 8
  %c = load double, ptr %t, align 8
  %r = fadd double %b, %c
  ret double %r
}

attributes #0 = { nounwind willreturn }
