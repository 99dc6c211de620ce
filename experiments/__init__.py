"""Experiments on recovery policies: the statistics (issue 18), pure Python over per-arm counts and sums.

Like ``rules/``, nothing here knows of Flask, the database or the queue: the application reads each arm's counts and
sums (``experiments.arms.ArmData``) and hands them in; what comes back is frozen dataclasses.

- ``arms``: one arm as the statistics read it (cases, recoveries, sums of amounts in minor units, ...), checked.
- ``split``: the planned split, each arm's share of the cases.
- ``srm``: the sample-ratio-mismatch check run on every read (chi-square against the planned split).
- ``estimates``: each arm's value of a metric with its variance, and a variant's difference from control.
- ``cuped``: variance reduction of amounts with the customer's pre-period payments (CUPED).
- ``boundaries``: the normal-mixture boundaries behind the always-valid intervals.
- ``sequential``: always-valid (mSPRT) intervals and p-values for a difference, valid however often it is read.
- ``corrections``: several variants against one control (Bonferroni intervals, Holm decisions).
- ``bayes``: the probability that a variant beats control and the expected loss of choosing it.
- ``guardrails``: opt-outs, STOPs, complaints and retry fees that stop a test when a variant harms them.
- ``power``: before launch, the sample size and duration for an effect, or the effect a duration can detect.
- ``lift``: recovered with Recoup minus recovered anyway (the holdout), with a confidence interval.
- ``readout``: one read of a running experiment, all of the above together.

Libraries: scipy (``scipy.stats.chisquare`` for the SRM check, ``scipy.special.gammaln`` for its always-valid
p-value; normal and t quantiles; ``scipy.optimize.brentq`` for the one-sided boundary and the minimum detectable
effect), statsmodels (``confint_proportions_2indep`` with Newcombe's method for the holdout lift; its
``multipletests`` is the reference the tests hold Holm's correction to), numpy (the seeded Beta draws of the
Bayesian engine). The always-valid interval is the two-sided normal mixture of Howard et al. (2021), which is
the mSPRT of Johari et al. (2017, 2022) and the interval GrowthBook's sequential testing uses (Waudby-Smith et al.
2024), written out here in a few lines: GrowthBook's ``gbstats`` 0.8.0 requires ``pandas<2`` and would take numpy
back to 1.26 (this project pins pandas 3 and numpy 2); ``confseq`` ships only C++ sources that need Boost and
pulls pytest and matplotlib in at run time; ``savvi`` pulls in cvxpy. See each module for its sources.
"""
