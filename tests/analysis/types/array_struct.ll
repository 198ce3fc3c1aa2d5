; numba's raw IR passes arrays as structs: the data pointer is inserted into an
; aggregate, the aggregate goes through a stack slot, and the pointer comes back
; out by extractvalue. A double stored through it types the whole chain,
; back to the buffer the pointer was loaded from.
define void @array_struct(ptr %buffer, i64 %length, double %value) {
entry:
  %slot = alloca { ptr, i64 }, align 8
  %data = load ptr, ptr %buffer, align 8
  %partial = insertvalue { ptr, i64 } undef, ptr %data, 0
  %array = insertvalue { ptr, i64 } %partial, i64 %length, 1
  store { ptr, i64 } %array, ptr %slot, align 8
  %reloaded = load { ptr, i64 }, ptr %slot, align 8
  %pointer = extractvalue { ptr, i64 } %reloaded, 0
  %count = extractvalue { ptr, i64 } %reloaded, 1
  %last = getelementptr double, ptr %pointer, i64 %count
  store double %value, ptr %last, align 8
  ret void
}
