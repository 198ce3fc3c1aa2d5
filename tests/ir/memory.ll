; alloca, load / store with alignment and volatile, GEP with struct, array and i8 byte offsets.
%pair = type { double, i64 }

define double @memory(ptr %data, i64 %i) {
entry:
  %slot = alloca %pair, align 16
  %buffer = alloca [4 x double], i32 2, align 8
  %first = getelementptr inbounds %pair, ptr %slot, i64 0, i32 0
  %second = getelementptr inbounds nuw %pair, ptr %slot, i64 0, i32 1
  %element = getelementptr double, ptr %data, i64 %i
  %value = load double, ptr %element, align 8
  store double %value, ptr %first, align 16
  store volatile i64 %i, ptr %second, align 8
  %byte = getelementptr inbounds i8, ptr %data, i64 16
  %third = load volatile double, ptr %byte, align 4
  %cell = getelementptr [4 x double], ptr %buffer, i64 1, i64 %i
  store double %third, ptr %cell, align 8
  %back = load double, ptr %cell, align 8
  %sum = fadd double %back, %value
  ret double %sum
}
