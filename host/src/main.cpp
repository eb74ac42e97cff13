// gpede command-line tool (placeholder until the solver is wired).
int main() { return 0; }
