// Placeholder: replaced by the tier's real main.
int main(void) { return 1; }
