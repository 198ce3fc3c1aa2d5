; A variadic function reading its arguments with va_arg, and LLVM 22's ptrtoaddr cast.
define i32 @varargs(i32 %count, ...) {
entry:
  %list = alloca ptr, align 8
  call void @llvm.va_start.p0(ptr %list)
  %first = va_arg ptr %list, i32
  %second = va_arg ptr %list, double
  call void @llvm.va_end.p0(ptr %list)
  %address = ptrtoaddr ptr %list to i64
  %low = trunc i64 %address to i32
  %sum = add i32 %first, %low
  ret i32 %sum
}

declare void @llvm.va_start.p0(ptr)

declare void @llvm.va_end.p0(ptr)
