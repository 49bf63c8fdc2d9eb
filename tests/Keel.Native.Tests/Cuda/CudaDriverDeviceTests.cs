namespace Keel.Native.Tests.Cuda;

/// <summary>Driver API on a real device: query, memory, copies, fills, streams, events. Skipped without a GPU.</summary>
[Collection(CudaDeviceCollection.Name)]
public sealed class CudaDriverDeviceTests
{
    private static readonly uint NaNBits = BitConverter.SingleToUInt32Bits(float.NaN);

    [Fact]
    public void DeviceQueryDescribesAUsableDevice()
    {
        using var context = CudaTestDevice.OpenOrSkip();

        var info = CudaDeviceInfo.Query(0);

        Assert.False(string.IsNullOrWhiteSpace(info.Name));
        Assert.Equal($"sm_{info.ComputeCapabilityMajor}{info.ComputeCapabilityMinor}", info.Architecture);
        Assert.InRange(info.ComputeCapabilityMajor, 5, 20);
        Assert.True(info.MultiprocessorCount > 0);
        Assert.True(info.TotalGlobalMemoryBytes > 1L << 30);
        Assert.True(info.L2CacheBytes > 0);
        Assert.True(info.MaxSharedMemoryPerBlockOptInBytes >= 48 * 1024);
        Assert.True(info.MaxSharedMemoryPerMultiprocessorBytes >= info.MaxSharedMemoryPerBlockOptInBytes);
        Assert.Equal(1024, info.MaxThreadsPerBlock);
        Assert.True(info.ClockRateKHz >= 0 && info.MemoryClockRateKHz >= 0 && info.MemoryBusWidthBits >= 0);
        Assert.True(CudaDriver.Version >= new Version(11, 8), $"driver supports CUDA {CudaDriver.Version}");
        var memory = context.MemoryInfo;
        Assert.InRange(memory.FreeBytes, 1, memory.TotalBytes);
        Assert.Equal("ordinal", Assert.Throws<ArgumentOutOfRangeException>(() => CudaDeviceInfo.Query(CudaDriver.DeviceCount)).ParamName);
    }

    [Fact]
    public void HostToDeviceToHostRoundTripIsExact()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        var data = CudaTestData.RandomFloats(1_000_003);
        using var memory = DeviceMemory.Allocate<float>(context, data.Length + 16);
        memory.FillUInt32(NaNBits);

        memory.CopyFrom<float>(data, destinationOffset: 64);
        var back = CudaTestData.Poisoned(data.Length, float.NaN);
        memory.CopyTo<float>(back, sourceOffset: 64);
        var head = new float[16];
        memory.CopyTo<float>(head);

        Assert.Equal(data, back);
        Assert.All(head, v => Assert.True(float.IsNaN(v), "bytes before the copy's offset were overwritten"));
        Assert.Equal("source", Assert.ThrowsAny<ArgumentException>(() => memory.CopyFrom<float>(data, destinationOffset: 128)).ParamName);
        Assert.Equal("destination", Assert.ThrowsAny<ArgumentException>(() => memory.CopyTo<float>(new float[data.Length + 17])).ParamName);
    }

    [Fact]
    public void FillsSetExactlyTheRequestedBytesAndWords()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        using var stream = CudaStream.Create(context);
        using var memory = DeviceMemory.Allocate(context, 4096);
        var expected = new byte[4096];
        for (var i = 0; i < expected.Length; i += 4) BitConverter.TryWriteBytes(expected.AsSpan(i), 0xDEADBEEFu);
        expected.AsSpan(100, 50).Fill(0x5A);
        for (var i = 1024; i < 1024 + 16 * 4; i += 4) BitConverter.TryWriteBytes(expected.AsSpan(i), 0x3F800000u);

        memory.FillUInt32(0xDEADBEEF);
        memory.FillBytes(0x5A, 100, 50);
        memory.FillUInt32(0x3F800000, 1024, 16);
        var bytes = new byte[4096];
        memory.CopyTo<byte>(bytes);

        Assert.Equal(expected, bytes);

        memory.FillBytesAsync(7, stream);
        stream.Synchronize();
        memory.CopyTo<byte>(bytes);
        Assert.All(bytes, b => Assert.Equal(7, b));

        memory.FillUInt32Async(NaNBits, stream);
        stream.Synchronize();
        var floats = new float[1024];
        memory.CopyTo<float>(floats);
        Assert.All(floats, v => Assert.True(float.IsNaN(v)));
        Assert.Equal("byteOffset", Assert.ThrowsAny<ArgumentException>(() => memory.FillUInt32(0, 2, 1)).ParamName);
    }

    [Fact]
    public void DeviceToDeviceCopyMovesTheRequestedRange()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        var data = CudaTestData.RandomFloats(10_000);
        using var source = DeviceMemory.Allocate<float>(context, data.Length);
        using var destination = DeviceMemory.Allocate<float>(context, data.Length);
        source.CopyFrom<float>(data);
        destination.FillUInt32(NaNBits);

        destination.CopyFrom(source, sourceOffset: 400, destinationOffset: 800, byteCount: 4000);
        var back = new float[data.Length];
        destination.CopyTo<float>(back);

        for (var i = 0; i < back.Length; i++)
            if (i is >= 200 and < 1200) Assert.Equal(data[i - 100], back[i]);
            else Assert.True(float.IsNaN(back[i]), $"element {i} outside the copied range was written");

        destination.CopyFrom(source, 0, 0, source.ByteLength);
        destination.CopyTo<float>(back);
        Assert.Equal(data, back);
        Assert.Equal("byteCount", Assert.ThrowsAny<ArgumentException>(() => destination.CopyFrom(source, 4, 0, source.ByteLength)).ParamName);
    }

    [Fact]
    public void AsyncCopiesThroughPinnedMemoryOnAStreamArriveIntact()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        const int count = 1 << 22;
        var data = CudaTestData.RandomFloats(count);
        using var stream = CudaStream.Create(context);
        using var upload = PinnedHostMemory.Allocate<float>(context, count);
        using var download = PinnedHostMemory.Allocate<float>(context, count);
        using var first = DeviceMemory.Allocate<float>(context, count);
        using var second = DeviceMemory.Allocate<float>(context, count);
        data.CopyTo(upload.AsSpan<float>());
        download.AsSpan<float>().Fill(float.NaN);

        first.CopyFromAsync<float>(upload.AsSpan<float>(), stream);
        second.CopyFromAsync(first, 0, 0, first.ByteLength, stream);
        second.CopyToAsync<float>(download.AsSpan<float>(), stream);
        stream.Synchronize();

        Assert.Equal(count, download.AsSpan<float>().Length);
        Assert.Equal(data, download.AsSpan<float>().ToArray());
    }

    [Fact]
    public void EventsTimeWorkOnAStream()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        using var stream = CudaStream.Create(context);
        using var memory = DeviceMemory.Allocate(context, 256L << 20);
        using var start = CudaEvent.Create(context);
        using var end = CudaEvent.Create(context);
        using var untimed = CudaEvent.Create(context, timing: false);

        start.Record(stream);
        memory.FillBytesAsync(1, stream);
        memory.FillUInt32Async(0, stream);
        end.Record(stream);
        end.Synchronize();
        var milliseconds = CudaEvent.ElapsedMilliseconds(start, end);

        Assert.InRange(milliseconds, float.Epsilon, 10_000f);
        Assert.Equal("end", Assert.Throws<ArgumentException>(() => CudaEvent.ElapsedMilliseconds(start, untimed)).ParamName);
    }

    [Fact]
    public void FailedDriverCallNamesTheCallAndTheError()
    {
        using var context = CudaTestDevice.OpenOrSkip();

        var e = Assert.Throws<CudaException>(() => DeviceMemory.Allocate(context, 1L << 60));

        Assert.Equal("cuMemAlloc", e.Call);
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.ErrorName);
        Assert.StartsWith($"cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY ({e.Status}): ", e.Message);
        using var small = DeviceMemory.Allocate(context, 1024); // the failure is not sticky
        Assert.Equal(1024, small.ByteLength);
    }
}
