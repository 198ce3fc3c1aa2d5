; A stack struct { double, i64, ptr }: each field's type is found at its byte
; offset, and a load through a constant GEP gets the field's type back.
; seed %x: []:Pointer, [-1]:Float@float
define float @fields(ptr %x, i64 %count) {
entry:
  %record = alloca { double, i64, ptr }, align 8
  store double 2.5, ptr %record, align 8
  %count.field = getelementptr inbounds { double, i64, ptr }, ptr %record, i32 0, i32 1
  store i64 %count, ptr %count.field, align 8
  %pointer.field = getelementptr inbounds { double, i64, ptr }, ptr %record, i32 0, i32 2
  store ptr %x, ptr %pointer.field, align 8
  %loaded = load ptr, ptr %pointer.field, align 8
  %first = load float, ptr %loaded, align 4
  ret float %first
}
