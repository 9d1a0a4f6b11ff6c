//! The delay buffer Q of Algorithm 1: the forecast delay is the maximum of the last b observed delays.

/// A fixed-capacity ring of observed delays, in policy ticks. Real-time safe after construction.
#[derive(Debug, Clone)]
pub struct DelayBuffer {
    values: Vec<usize>,
    next: usize,
    len: usize,
}

impl DelayBuffer {
    /// A buffer of `capacity` delays holding the initial estimate `initial`.
    pub fn new(capacity: usize, initial: usize) -> Self {
        let mut values = vec![0; capacity.max(1)];
        values[0] = initial;
        DelayBuffer {
            values,
            next: 1 % capacity.max(1),
            len: 1,
        }
    }

    /// Records an observed delay, evicting the oldest when full.
    pub fn push(&mut self, delay: usize) {
        self.values[self.next] = delay;
        self.next = (self.next + 1) % self.values.len();
        self.len = (self.len + 1).min(self.values.len());
    }

    /// The maximum of the delays held: a conservative forecast of the next one.
    pub fn forecast(&self) -> usize {
        let start = (self.next + self.values.len() - self.len) % self.values.len();
        (0..self.len)
            .map(|k| self.values[(start + k) % self.values.len()])
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::DelayBuffer;

    #[test]
    fn forecast_is_the_max_of_the_last_b_delays() {
        let mut buffer = DelayBuffer::new(3, 7);
        assert_eq!(buffer.forecast(), 7);
        buffer.push(2);
        buffer.push(3);
        assert_eq!(buffer.forecast(), 7);
        buffer.push(1);
        assert_eq!(buffer.forecast(), 3, "the initial estimate was evicted");
        buffer.push(1);
        buffer.push(1);
        assert_eq!(buffer.forecast(), 1);
    }
}
