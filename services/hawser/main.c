// Placeholder: replaced by the all-in-one main.
int main(void) { return 1; }
