// Pi by the Nilakantha series; `input.terms` sets the number of terms (default 1e6).
const terms = (input && input.terms) || 1000000;
let pi = 3;
let sign = 1;
for (let i = 1; i <= terms; i++) {
  const n = 2 * i;
  pi += sign * (4 / (n * (n + 1) * (n + 2)));
  sign = -sign;
}
console.log(`pi after ${terms} terms`);
({ pi, terms, error: Math.abs(pi - Math.PI) });
