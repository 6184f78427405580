// eval_pick_ref.cpp - the task orders llama-perplexity uses, printed for tests/test_eval_mc.c:
// the same std::mt19937(1) draws as hellaswag_score (uniform_int_distribution over the tasks
// left, each erased when drawn) and as winogrande_score / multiple_choice_score (float scaling,
// the drawn slot refilled from the back). Build: g++ -O1 -o pick tests/eval_pick_ref.cpp
// Run: ./pick N_TOTAL N_WANT  -> "hellaswag: i i i ..." and "mc: i i i ..." lines.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    size_t n_total = std::strtoul(argv[1], nullptr, 10), n_want = std::strtoul(argv[2], nullptr, 10);
    {
        std::mt19937 rng(1);
        std::vector<size_t> pool(n_total);
        for (size_t i = 0; i < n_total; i++)
            pool[i] = i;
        std::printf("hellaswag:");
        for (size_t i = 0; i < n_want; i++) {
            std::uniform_int_distribution<size_t> dist(0, pool.size() - 1);
            size_t idx = dist(rng);
            std::printf(" %zu", pool[idx]);
            pool.erase(pool.begin() + idx);
        }
        std::printf("\n");
    }
    {
        std::mt19937 rng(1);
        std::vector<int> aux(n_total);
        for (size_t i = 0; i < n_total; i++)
            aux[i] = (int)i;
        float scale = 1.f / (1.f + (float)std::mt19937::max());
        std::printf("mc:");
        for (size_t i = 0; i < n_want; i++) {
            int j = (int)(scale * rng() * aux.size());
            std::printf(" %d", aux[j]);
            aux[j] = aux.back();
            aux.pop_back();
        }
        std::printf("\n");
    }
    return 0;
}
