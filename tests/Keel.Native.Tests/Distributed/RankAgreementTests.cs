namespace Keel.Native.Tests.Distributed;

/// <summary>Ranks that stop together: every rank throws the same message, naming the ranks it concerns.</summary>
public sealed class RankAgreementTests
{
    [Fact]
    public void FailuresOnSomeRanksStopEveryRankWithOneMessageNamingThem()
    {
        var results = ThreadRanks.Run(4, ranks => ranks.Agree(ranks.Rank switch
        {
            1 or 2 => "Data file /x does not exist.",
            3 => "There are 2 GPUs (0 to 1).",
            _ => null,
        }));
        const string Expected = "ranks 1-2: Data file /x does not exist.; rank 3: There are 2 GPUs (0 to 1).";
        Assert.All(results, e => Assert.Equal(Expected, Assert.IsType<DistributedException>(e).Message));

        // A reason every rank gives is said once, as one process says it; no failure, no exception.
        results = ThreadRanks.Run(3, ranks => ranks.Agree("--batch: too big."));
        Assert.All(results, e => Assert.Equal("--batch: too big.", e!.Message));
        Assert.All(ThreadRanks.Run(3, ranks => ranks.Agree(null)), Assert.Null);
    }

    [Fact]
    public void ALongMessageIsCutAtACharacterBoundary()
    {
        var long_ = new string('é', RankAgreement.MessageBytes);
        var results = ThreadRanks.Run(2, ranks => ranks.Agree(ranks.Rank == 1 ? long_ : null));
        var message = results[0]!.Message;
        Assert.StartsWith("rank 1: éé", message);
        Assert.Equal(RankAgreement.MessageBytes / 2, message.Length - "rank 1: ".Length);
        Assert.Equal(message, results[1]!.Message);
    }

    [Fact]
    public void RanksGivenDifferentRunsNameTheFieldsThatDiffer()
    {
        var config = TrainingFixtures.TinyConfig;
        var data = TrainingFixtures.CopyTask();
        var results = ThreadRanks.Run(3, ranks => ranks.RequireSame(RunFingerprint.Parts(
            ranks.Rank == 2 ? config with { Hidden = 32 } : config,
            TrainingFixtures.TinyOptions with { Seed = ranks.Rank == 1 ? 7UL : 42UL },
            data)));
        Assert.All(results, e => Assert.Equal(
            "rank 1: different training options from rank 0: seed 7 (rank 0: 42); rank 2: different model config from rank 0: hidden 32 (rank 0: 16)",
            Assert.IsType<DistributedException>(e).Message));

        results = ThreadRanks.Run(2, ranks => ranks.RequireSame(RunFingerprint.Parts(config, TrainingFixtures.TinyOptions,
            ranks.Rank == 0 ? data : TrainingFixtures.CopyTask(seed: 4))));
        Assert.Matches(@"^rank 1: different data from rank 0: SHA-256 [0-9a-f]{12} \(rank 0: [0-9a-f]{12}\)$", results[0]!.Message);

        Assert.All(ThreadRanks.Run(2, ranks => ranks.RequireSame(RunFingerprint.Parts(config, TrainingFixtures.TinyOptions, data))), Assert.Null);
    }
}
