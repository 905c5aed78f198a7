//! Stage 2: standardisation throughput (records/s) on generated person records.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

fn standardise(c: &mut Criterion) {
    let (_, kp, raw) = common::persons();
    let mut g = c.benchmark_group("standardise");
    g.sample_size(10);
    g.throughput(Throughput::Elements(raw.len() as u64));
    g.bench_function("person_records", |b| {
        b.iter(|| yiku::standardise::standardise(raw.clone(), &kp, &[]).expect("standardise"))
    });
    g.finish();
}

criterion_group!(benches, standardise);
criterion_main!(benches);
