//! Stages 4 and 5: comparison per field type and the whole compare + score kernel
//! (candidate pairs/s) with the person preset.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

fn compare_and_score(c: &mut Criterion) {
    let (plan, kp, table, cands) = common::blocked();
    let comparators = yiku::compare::comparators(&table, &kp.comparisons).expect("columns");
    let n = cands.len() as u64;
    let mut g = c.benchmark_group("compare");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    for (spec, cmp) in kp.comparisons.iter().zip(&comparators) {
        g.bench_function(format!("{}_{:?}", spec.field, spec.method), |b| {
            b.iter(|| {
                cands
                    .left
                    .iter()
                    .zip(&cands.right)
                    .map(|(&l, &r)| u64::from(cmp.level(l as usize, r as usize)))
                    .sum::<u64>()
            })
        });
    }
    g.bench_function("fingerprints_per_candidate", |b| {
        b.iter(|| yiku::compare::comparators(&table, &kp.comparisons).expect("columns"))
    });
    let compared = yiku::compare::compare(&comparators, &kp.comparisons, &cands).expect("compare");
    let model = yiku::score::train(
        &kp,
        &comparators,
        &table.source,
        &compared,
        &cands.agree,
        plan.mode,
        7,
    );
    g.bench_function("compare_all_fields", |b| {
        b.iter(|| yiku::compare::compare(&comparators, &kp.comparisons, &cands).expect("compare"))
    });
    g.bench_function("score", |b| {
        b.iter(|| yiku::score::score(&model, &comparators, &compared).expect("score"))
    });
    g.finish();
}

criterion_group!(benches, compare_and_score);
criterion_main!(benches);
