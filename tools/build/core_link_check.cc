// Built only to prove that the service cores link without gRPC (tools/build/CMakeLists.txt); it
// does nothing when run.
int main() { return 0; }
