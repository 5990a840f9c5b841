#include <cstdio>
int main() { std::puts("fela"); return 0; }
