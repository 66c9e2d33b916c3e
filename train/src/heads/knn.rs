//! Cosine k-nearest-neighbour voting as the daemon does it (`refs::RefSet::vote`): each of the k
//! nearest references votes for its class with weight `max(similarity, 0)`, normalised to sum 1.
//! Similarities come from one matrix product in libtorch, so whole test sets run at once.

use tch::{Kind, Tensor};

/// Reference windows with their class.
pub struct KnnIndex {
    refs: Tensor,
    labels: Tensor,
    pub classes: usize,
    pub k: usize,
    d: usize,
}

fn normalised(x: &[f32], d: usize) -> Tensor {
    let n = (x.len() / d) as i64;
    let t = Tensor::from_slice(x).view([n, d as i64]);
    let norm = t
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(1e-12);
    t / norm
}

impl KnnIndex {
    /// `rows` is `n × d` row-major (z-scored embeddings), `labels[i]` row i's class.
    pub fn new(rows: &[f32], d: usize, labels: &[usize], classes: usize, k: usize) -> Self {
        assert_eq!(rows.len() / d, labels.len(), "one label per reference row");
        Self {
            refs: normalised(rows, d),
            labels: Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>()),
            classes,
            k: k.max(1),
            d,
        }
    }

    /// Width of a reference row.
    pub fn dim(&self) -> usize {
        self.d
    }

    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vote shares, `queries × classes` row-major.
    pub fn vote(&self, queries: &[f32]) -> Vec<f32> {
        let nq = queries.len() / self.d;
        if nq == 0 || self.is_empty() {
            return vec![0.0; nq * self.classes];
        }
        let k = self.k.min(self.len()) as i64;
        let mut out = Vec::with_capacity(nq * self.classes);
        // Chunks keep the similarity matrix small.
        for chunk in queries.chunks(1024 * self.d) {
            let q = normalised(chunk, self.d);
            let sims = q.matmul(&self.refs.tr());
            let (top, idx) = sims.topk(k, 1, true, true);
            let w = top.clamp_min(0.0);
            let total = w.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
            // Where every neighbour is dissimilar, fall back to equal weights.
            let w = w.where_self(&total.gt(0.0), &top.ones_like());
            let total = w.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
            let w = w / total;
            let lab = self
                .labels
                .index_select(0, &idx.flatten(0, -1))
                .view_as(&idx);
            let votes = Tensor::zeros(
                [q.size()[0], self.classes as i64],
                (Kind::Float, tch::Device::Cpu),
            )
            .scatter_add(1, &lab, &w);
            out.extend(Vec::<f32>::try_from(votes.flatten(0, -1)).expect("f32 votes"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_are_similarity_weighted_shares() {
        // Three references in 2-d: two of class 0 near (1, 0), one of class 1 at (0, 1).
        let refs = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0];
        let idx = KnnIndex::new(&refs, 2, &[0, 0, 1], 2, 3);
        let v = idx.vote(&[1.0, 0.05, 0.0, 1.0]);
        assert!((v[0] + v[1] - 1.0).abs() < 1e-5);
        assert!(v[0] > 0.95, "{v:?}"); // the class-1 reference is orthogonal: weight ≈ 0
        assert!(v[3] > v[2], "{v:?}");
        // k = 1 is a nearest-neighbour label.
        let idx1 = KnnIndex::new(&refs, 2, &[0, 0, 1], 2, 1);
        assert_eq!(idx1.vote(&[0.1, 1.0]), vec![0.0, 1.0]);
    }
}
