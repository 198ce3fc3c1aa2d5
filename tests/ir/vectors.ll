; What LLVM's loop vectorizer prints (numba's optimized IR of a callee compiled before
; enzpy was imported): vector loads and stores, splats by insertelement + shufflevector,
; masks with poison lanes, vector phis / compares / selects / casts / GEPs, reductions.
define double @vectors(ptr %x, ptr %y, i64 %n, double %scale) {
entry:
  %head = insertelement <4 x double> poison, double %scale, i64 0
  %splat = shufflevector <4 x double> %head, <4 x double> poison, <4 x i32> zeroinitializer
  br label %loop

loop:
  %index = phi i64 [ 0, %entry ], [ %next, %loop ]
  %lanes = phi <4 x i64> [ <i64 0, i64 1, i64 2, i64 3>, %entry ], [ %lanes.next, %loop ]
  %sum = phi <4 x double> [ zeroinitializer, %entry ], [ %sum.next, %loop ]
  %address = getelementptr inbounds double, ptr %x, i64 %index
  %wide = load <4 x double>, ptr %address, align 8
  %scaled = fmul fast <4 x double> %wide, %splat
  %as.float = sitofp <4 x i64> %lanes to <4 x double>
  %shifted = fadd <4 x double> %scaled, %as.float
  %positive = fcmp ogt <4 x double> %shifted, zeroinitializer
  %clamped = select <4 x i1> %positive, <4 x double> %shifted, <4 x double> zeroinitializer
  %out = getelementptr inbounds double, ptr %y, i64 %index
  store <4 x double> %clamped, ptr %out, align 8
  %sum.next = fadd <4 x double> %sum, %clamped
  %lanes.next = add nuw nsw <4 x i64> %lanes, splat (i64 4)
  %next = add nuw i64 %index, 4
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %loop

exit:
  %reversed = shufflevector <4 x double> %sum.next, <4 x double> poison, <4 x i32> <i32 3, i32 2, i32 1, i32 0>
  %mixed = shufflevector <4 x double> %sum.next, <4 x double> %reversed, <2 x i32> <i32 0, i32 poison>
  %widened = shufflevector <2 x double> %mixed, <2 x double> %mixed, <8 x i32> <i32 0, i32 1, i32 2, i32 3, i32 0, i32 1, i32 2, i32 3>
  %low = extractelement <8 x double> %widened, i32 0
  %total = call double @llvm.vector.reduce.fadd.v4f64(double -0.000000e+00, <4 x double> %reversed)
  %count = call i64 @llvm.vector.reduce.add.v4i64(<4 x i64> %lanes.next)
  %pointers = getelementptr double, ptr %x, <4 x i64> %lanes.next
  %first = extractelement <4 x ptr> %pointers, i64 0
  %bits = bitcast <4 x double> %reversed to <8 x i32>
  %frozen = freeze <8 x i32> %bits
  %word = extractelement <8 x i32> %frozen, i64 %n
  %result = fadd double %total, %low
  ret double %result
}

declare double @llvm.vector.reduce.fadd.v4f64(double, <4 x double>)

declare i64 @llvm.vector.reduce.add.v4i64(<4 x i64>)
