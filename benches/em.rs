//! Stage 5 training: u sampling, level patterns and EM, with the person preset.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

fn em(c: &mut Criterion) {
    let (plan, kp, table, cands) = common::blocked();
    let comparators = yiku::compare::comparators(&table, &kp.comparisons).expect("columns");
    let compared = yiku::compare::compare(&comparators, &kp.comparisons, &cands).expect("compare");
    let mut g = c.benchmark_group("em");
    g.sample_size(10);
    g.throughput(Throughput::Elements(cands.len() as u64));
    g.bench_function("patterns", |b| {
        b.iter(|| yiku::score::em::patterns(&compared.batches, comparators.len(), &cands.agree))
    });
    let patterns = yiku::score::em::patterns(&compared.batches, comparators.len(), &cands.agree);
    let (u, _) = yiku::score::em::estimate_u(&comparators, &table.source, plan.mode, 100_000, 7);
    g.bench_function("em_sessions", |b| {
        b.iter(|| yiku::score::em::train(&kp, u.clone(), &patterns, 7, 100_000))
    });
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("u_sample_100k_pairs", |b| {
        b.iter(|| yiku::score::em::estimate_u(&comparators, &table.source, plan.mode, 100_000, 7))
    });
    g.finish();
}

criterion_group!(benches, em);
criterion_main!(benches);
