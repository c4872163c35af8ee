//! The cost of checking a scenario file, by its number of user types: the time per type
//! must stay flat from 1,000 to 10,000 types (it grew with the square of the count once:
//! 43 s for 100,000 types).
//!
//! `cargo bench -p aiotest-cli --bench scenario_file` (or `cargo xtask bench --criterion`).

// criterion's macros define an undocumented public function.
#![allow(missing_docs)]

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn file_with(types: usize) -> String {
    let mut text = String::from("host = \"http://127.0.0.1:8080\"\n[load]\nusers = 1\n");
    for i in 0..types {
        text.push_str(&format!(
            "[[users]]\nname = \"u{i}\"\nwait_time = 0.5\n\
             [[users.tasks]]\nname = \"t{i}\"\npath = \"/items/{i}\"\n"
        ));
    }
    text
}

fn check(c: &mut Criterion) {
    let mut group = c.benchmark_group("scenario_file");
    group.sample_size(10);
    for types in [1_000usize, 10_000] {
        let text = file_with(types);
        // Per type, so a flat line means linear cost.
        group.throughput(Throughput::Elements(types as u64));
        group.bench_with_input(BenchmarkId::new("check", types), &text, |b, text| {
            b.iter(|| {
                let file = aiotest_scenario::parse(Path::new("big.toml"), text)
                    .expect("the generated file is valid");
                assert_eq!(file.user_types.len(), types);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
