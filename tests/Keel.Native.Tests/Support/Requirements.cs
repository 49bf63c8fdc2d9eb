namespace Keel.Native.Tests.Support;

/// <summary>Gates for tests that need something this machine may lack.</summary>
internal static class Requirements
{
    /// <summary>
    /// Skips the test when NVRTC cannot be loaded, or fails it when <c>KEEL_REQUIRE_NVRTC=1</c> (as CI sets),
    /// so the compile tier can never pass by skipping where it is meant to run.
    /// </summary>
    public static void Nvrtc()
    {
        if (CudaLibraries.TryLoad(CudaLibrary.Nvrtc, out _, out var error)) return;
        var reason = "NVRTC is not available: " + error!.Message;
        if (Environment.GetEnvironmentVariable("KEEL_REQUIRE_NVRTC") == "1") Assert.Fail(reason + " (KEEL_REQUIRE_NVRTC=1)");
        Assert.Skip(reason);
    }
}
