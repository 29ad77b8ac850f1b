storage/CMakeFiles/herald_storage.dir/migrations_embedded.c.o: \
 /work/main/build/storage/migrations_embedded.c \
 /usr/include/stdc-predef.h /work/main/common/embed.h \
 /usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h
