; memcpy carries the source's float type to the destination; a phi merging
; two pointers gives both the union of what each points at.
; seed %x: []:Pointer, [-1]:Float@double
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)

define double @copy(ptr %x, ptr %scratch, ptr %other, i1 %which) {
entry:
  call void @llvm.memcpy.p0.p0.i64(ptr %scratch, ptr %x, i64 64, i1 false)
  br i1 %which, label %left, label %right
left:
  br label %join
right:
  br label %join
join:
  %chosen = phi ptr [ %scratch, %left ], [ %other, %right ]
  %value = load double, ptr %chosen, align 8
  ret double %value
}
