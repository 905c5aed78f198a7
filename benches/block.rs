//! Stage 3: blocking throughput (candidate pairs/s) with the person preset's rules.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

fn block(c: &mut Criterion) {
    let (plan, kp, raw) = common::persons();
    let table = yiku::standardise::standardise(raw, &kp, &[]).expect("standardise");
    let pairs = yiku::block::block(&table, &kp.blocking, kp.max_block_size, plan.mode, None).len();
    let mut g = c.benchmark_group("block");
    g.sample_size(10);
    g.throughput(Throughput::Elements(pairs as u64));
    g.bench_function("person_preset_rules", |b| {
        b.iter(|| yiku::block::block(&table, &kp.blocking, kp.max_block_size, plan.mode, None))
    });
    g.finish();
}

criterion_group!(benches, block);
criterion_main!(benches);
