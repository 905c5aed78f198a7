//! Stage 6: the parallel union-find with must-not-link, on the scored person edges.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

fn cluster(c: &mut Criterion) {
    let (plan, kp, table, cands) = common::blocked();
    let comparators = yiku::compare::comparators(&table, &kp.comparisons).expect("columns");
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
    let scored = yiku::score::score(&model, &comparators, &compared).expect("score");
    let edges = yiku::cluster::edges(&scored, kp.match_probability);
    let mnl: Vec<_> = kp
        .must_not_link
        .iter()
        .filter_map(|c| table.column(c))
        .collect();
    let mut g = c.benchmark_group("cluster");
    g.sample_size(10);
    g.throughput(Throughput::Elements(edges.len() as u64));
    g.bench_function("union_find_must_not_link", |b| {
        b.iter(|| yiku::cluster::cluster(table.len(), &edges, &mnl, &[]))
    });
    g.finish();
}

criterion_group!(benches, cluster);
criterion_main!(benches);
